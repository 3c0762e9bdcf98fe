"""Dashboard page: an exported model run as a deployment runs it, against the reference. Layout and logic:
d2debug.ui.deployed_page."""
from d2debug.ui.deployed_page import deployed_page

deployed_page()
