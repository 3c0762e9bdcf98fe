"""Dashboard page: the Pipeline Doctor. It opens on an example input made the way real scripts make them;
the user's own saved input (a dict or tensor, for the sidebar's image) is one click away.
``d2debug.doctor.diagnose`` says which stages differ from the reference, with evidence and the fix. This page
only picks the input and renders the diagnosis."""
import hashlib
import json

import streamlit as st

from d2debug.doctor import call_preprocess, diagnose, load_fingerprint, load_user_input, parse_user_input
from d2debug.doctor.examples import EXAMPLES, example_input
from d2debug.doctor.inputs import preprocess_function
from d2debug.errors import D2DebugError
from d2debug.ui import charts, serving, sidebar
from d2debug.ui.loaders import contract_from, file_key
from d2debug.ui.state import Keys

EXAMPLE = "Example made like a real script"
FUNCTION = "Your preprocessing function"
SOURCES = ("Upload", "Path on this workstation")
INPUT_TYPES = ["pt", "pth", "npy", "npz"]

sel = sidebar()
st.title("Pipeline doctor")
st.markdown(
    "Save what **your** inference code feeds the model for the image chosen in the sidebar, load it here, and "
    "the Doctor works out which preprocessing stages differ from the reference (what `DefaultPredictor` does), "
    "with the numbers behind each finding and the fix. Files are read safely: tensors and plain containers only "
    "(`torch.load(weights_only=True)`, `numpy.load(allow_pickle=False)`)."
)
with st.expander("How to save your model input"):
    st.code(
        "inputs = my_preprocess(path)            # what you pass to model(...)\n"
        "torch.save(inputs, 'my_input.pt')        # a dict {'image', 'height', 'width'}, a list of them, or a tensor\n"
        "# or: numpy.save('my_input.npy', tensor.numpy())\n"
        "# an exported model: save the 3xHxW tensor your deployment feeds it, and give its contract below\n"
        "# command line: python -m d2debug doctor --image IMAGE --input my_input.pt [--contract model.ts] [--json]",
        language="python",
    )


def pick(label: str, key: str, types: list[str], sources=SOURCES):
    """A file by upload or path (or an example). Returns (bytes or path or None, display name, cache key)."""
    choice = st.radio(label, sources, key=f"{key}_source", horizontal=True)
    if choice == FUNCTION:
        spec = st.text_input("FILE.py:FUNCTION (called with the sidebar image's path; returns what you feed the model)",
                             key="doctor_function", placeholder="/path/to/infer.py:preprocess").strip()
        trusted = serving.code_tick("Run my function (its file is imported and run in the dashboard's process)",
                                    Keys.DOCTOR_TRUST_CODE, explain=True)
        if not spec:
            return None, "", ""
        return ("function", spec, trusted), spec, f"function:{file_key(spec.rpartition(':')[0])}:{spec}:{trusted}"
    if choice == EXAMPLE:
        ex = st.selectbox("Example", list(EXAMPLES), key="doctor_example", format_func=lambda k: EXAMPLES[k].title)
        st.code(EXAMPLES[ex].code, language="python")
        return ex, EXAMPLES[ex].title, f"example:{ex}"
    if choice == SOURCES[0]:
        up = st.file_uploader(label, type=types, key=f"{key}_upload", label_visibility="collapsed")
        if up is None:
            return None, "", ""
        data = up.getvalue()
        return data, up.name, hashlib.sha256(data).hexdigest()
    path = st.text_input(f"{label}: path", key=f"{key}_path", placeholder=f"/path/to/file.{types[0]}").strip()
    return (path or None), path, file_key(path) if path else ""


left, right = st.columns(2)
with left:
    source, source_name, source_key = pick("Model input (yours: .pt / .pth / .npy / .npz)", "doctor_input", INPUT_TYPES,
                                           (EXAMPLE, *SOURCES, FUNCTION))
    is_example = source_key.startswith("example:")
with right:
    use_fp = st.checkbox("Check against a pipeline fingerprint (recorded at training time)", key="doctor_use_fp")
    fp_source, fp_name, fp_key = pick("Fingerprint (.json)", "doctor_fp", ["json"]) if use_fp else (None, "", "")
    use_contract = st.checkbox("My input is what my deployment feeds an exported model (check it against the "
                               "model's contract)", key=Keys.DOCTOR_USE_CONTRACT)
    c_source, c_name, c_key = (pick("Contract (contract.json; by path also the .ts / .onnx model)",
                                    Keys.DOCTOR_CONTRACT, ["json"]) if use_contract else (None, "", ""))

if sel.image is None and not is_example:
    st.info("Choose an image in the sidebar: the one your input was made from.")
    st.stop()
if source is None:
    for k in (Keys.DOCTOR, f"_{Keys.DOCTOR}_diag", f"_{Keys.DOCTOR}_key"):
        st.session_state.pop(k, None)  # what is shown is always the diagnosis of the input chosen now
    st.info("Give your saved model input to diagnose it.")
    st.stop()

image = EXAMPLES[source].image if is_example else sel.image
if is_example:
    st.caption(f"The example runs on the sample image **{image.name}** with the sidebar's model; choose Upload or "
               "Path above to diagnose your own saved input for the sidebar's image.")
run_key = f"{sel.model_key}|{file_key(image)}|{source_key}|{fp_key}|{c_key}"
if st.session_state.get(f"_{Keys.DOCTOR}_key") != run_key:
    st.session_state.pop(Keys.DOCTOR, None)
    st.session_state.pop(f"_{Keys.DOCTOR}_diag", None)
    try:
        # Typed paths are read only where this server allows (uploads and examples are not paths).
        fp_source, c_source = (serving.path(s, what) if isinstance(s, str) else s
                               for s, what in ((fp_source, "fingerprint"), (c_source, "contract")))
        fingerprint = None
        if fp_source is not None:
            fingerprint = load_fingerprint(json.loads(fp_source) if isinstance(fp_source, bytes) else fp_source)
        contract = contract_from(c_source, c_name) if c_source is not None else None
        user_fn = None
        if is_example:
            user = parse_user_input(example_input(source, sel.loaded.cfg)[1], source_name)
        elif isinstance(source, tuple):  # the user's function: refused in one line unless "Run my function"
            serving.require_code("Run my function")
            file, sep, function = source[1].rpartition(":")
            fn_spec = f"{serving.path(file, 'function file')}:{function}" if sep and file else source[1]
            user_fn = preprocess_function(fn_spec, trust=source[2])
            user = call_preprocess(fn_spec, image, trust=source[2], fn=user_fn)
        else:
            user = load_user_input(serving.path(source, "model input"), name=source_name)
        with st.spinner("Re-rendering the image under each candidate explanation, then measuring each finding's "
                        "damage with the model..."):
            diag = diagnose(sel.loaded, image, user, fingerprint=fingerprint, contract=contract,
                            preprocess=user_fn)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        st.error(f"{fp_name}: not a JSON fingerprint ({exc})")
        st.stop()
    except D2DebugError as exc:
        st.error(str(exc))
        st.stop()
    st.session_state[f"_{Keys.DOCTOR}_key"] = run_key
    st.session_state[f"_{Keys.DOCTOR}_diag"] = diag
    st.session_state[Keys.DOCTOR] = diag.to_dict()
diag = st.session_state[f"_{Keys.DOCTOR}_diag"]
result = st.session_state[Keys.DOCTOR]

c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Reference input", "x".join(map(str, result["reference"]["shape"])))
c2.metric("Your input", "x".join(map(str, result["input"]["shape"])), help=diag.user_input.describe())
c3.metric("Your dtype", result["input"]["dtype"])
c4.metric("Your value range", f"{result['input']['range'][0]:.4g} .. {result['input']['range'][1]:.4g}",
          help="the reference is float32 0..255")
if "residual" in result["analysis"]:
    c5.metric("Unexplained after diagnosis", f"{result['analysis']['residual']:.3g} grey levels",
              help="RMS error left after the best explanation: ~0 means the findings reproduce your input exactly")

st.subheader("Findings")
if "contract" in result["analysis"]:
    st.caption(f"Relative to the exported model's contract: {result['analysis']['contract']['summary']}.")
st.caption("Most damaging first: the model runs on your input and on your input with each finding fixed alone; "
           "the agreement with the reference's detections that each fix recovers orders them.")
if diag.is_match:
    f = diag.findings[0]
    st.success(f"**match**: {f.evidence}")
elif diag.top == "unexplained":
    st.warning("The input differs from the reference by a transform no stage of the reference pipeline has "
               "(the `unexplained` finding says what it resembles).")
for i, f in enumerate([f for f in diag.findings if f.id != "match"], 1):  # a match may carry reminders
    with st.container(border=True):
        damage = "" if f.recovers is None else (
            f" &nbsp; fixing it alone recovers **{f.recovers:+.3f}** agreement F1"
            + ("" if f.costs_alone is None else f" (alone it costs {f.costs_alone:.3f})"))
        st.markdown(f"**{i}. `{f.id}`** &nbsp; confidence {f.confidence:.2f}{damage}")
        if f.own is not None:
            st.caption(f"On your function: {f.own}." if f.recovers_own is None else
                       f"On your function: fixing it alone recovers {f.recovers_own:+.3f} ({f.own}).")
        st.markdown(f.evidence)
        st.code(f.fix, language="python", wrap_lines=True)
for n in diag.notes:
    st.caption(f"Note: {n}")

st.subheader("Reference vs your input")
ref_img, user_img = diag.display_images()
heat, top = diag.difference_heatmap()
a, b, c = st.columns(3)
a.image(ref_img, caption=f"reference model input ({diag.cfg_format}, 0..255)", width="stretch")
b.image(user_img, caption=f"your input, channels read as {diag.cfg_format}, stretched to its own min..max",
        width="stretch")
c.image(heat, caption=f"per-pixel |your input - reference|, channel mean; white-hot = {top:.4g}"
        + ("" if tuple(diag.user.shape) == tuple(diag.reference.shape) else " (your input resampled to the reference grid)"),
        width="stretch")
charts.histograms(diag.histogram_records(labels=("reference", "variant")),
                  "model input per channel: reference (blue) vs your input (red), shared bins")

with st.expander("Analysis details"):
    st.json(result["analysis"], expanded=False)
st.download_button("Download the diagnosis (JSON)", json.dumps(result, indent=1), file_name="doctor.json",
                   mime="application/json", key="doctor_download")
