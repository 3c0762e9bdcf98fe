"""Tools that drive d2debug from outside: the speed and memory benchmark, and a real dashboard server
started for the browser test and the memory row. They sit above the library and the CLI calls them."""
