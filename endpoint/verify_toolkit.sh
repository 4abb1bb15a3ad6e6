#!/usr/bin/env bash
# Serve the endpoint repository with Hugging Face's own Inference Endpoints toolkit, locally,
# the way its container does, and check the answers. Prints PASS/FAIL lines; exits 1 on any FAIL.
#
# Get the toolkit (it is not on PyPI; never copy its code into this repository):
#
#   git clone https://github.com/huggingface/huggingface-inference-toolkit /tmp/hfit
#   git -C /tmp/hfit checkout 833b5a2efd70c4e2c6a275c5866a0b82f3fc3e93   # main of 2025-08-25, setup.py 0.5.6 (after tag 0.5.5)
#
# Run it (needs python3.11 and PyPI; the first run builds a venv in WORKDIR, later runs reuse it):
#
#   endpoint/verify_toolkit.sh /tmp/hfit [WORKDIR=/tmp/seg2sat-toolkit-check]
#
# What it does, as dockerfiles/pytorch/Dockerfile and scripts/entrypoint.sh of the toolkit do:
#   1. a venv with the toolkit's own pins (setup.py: install_requires + the "diffusers" extra:
#      transformers 4.51.3, huggingface_hub 0.30.2, diffusers 0.33.1, accelerate 1.6.0) and the
#      toolkit installed; torch is $TORCH_SPEC (torch==2.13.0 CPU here, the image has 2.5.1 CUDA);
#      kenlm (a git-only audio dependency) is left out, and starlette is kept below 1.0
#      (1.0 dropped Starlette(on_startup=...), which the toolkit's webservice uses);
#   2. the tiny pipeline (`seg2sat make-tiny`) and `endpoint/build_repository.py REPO --weights TINY`;
#   3. `pip install -r REPO/requirements.txt` into that venv (what entrypoint.sh does at start-up);
#   4. `uvicorn webservice_starlette:app` with HF_MODEL_DIR=REPO from the toolkit's source folder;
#   5. real HTTP requests: JSON, Accept: image/png (also with Drawing2Map's flat payload), bad ones.
#
# Environment: PYTHON (python3.11), PROJECT_PYTHON (a python with this project's own stack, for
# make-tiny and build_repository; default /work/venv/bin/python, else python3), TORCH_SPEC, PORT.
set -u -o pipefail

TOOLKIT=${1:?usage: verify_toolkit.sh TOOLKIT_DIR [WORKDIR]}
TOOLKIT=$(cd "$TOOLKIT" && pwd)
WORK=${2:-/tmp/seg2sat-toolkit-check}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
PYTHON=${PYTHON:-python3.11}
PROJECT_PYTHON=${PROJECT_PYTHON:-$( [ -x /work/venv/bin/python ] && echo /work/venv/bin/python || echo python3 )}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
PORT=${PORT:-5123}
VENV=$WORK/venv
REPO=$WORK/repository
FAILS=0

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; FAILS=$((FAILS + 1)); }
die() { fail "$*"; echo "RESULT: FAIL (stopped early)"; exit 1; }

[ -f "$TOOLKIT/src/huggingface_inference_toolkit/webservice_starlette.py" ] \
    || die "$TOOLKIT is not a huggingface-inference-toolkit checkout (no src/huggingface_inference_toolkit/webservice_starlette.py)"
echo "toolkit: $TOOLKIT @ $(git -C "$TOOLKIT" rev-parse HEAD 2>/dev/null || echo '?') ($(git -C "$TOOLKIT" describe --tags 2>/dev/null || echo 'no tag'))"
mkdir -p "$WORK"

# ---------------------------------------------------------------- 1. the toolkit's stack
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.seg2sat-ready" ]; then
    echo "building the toolkit venv in $VENV (once) ..."
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "cannot create a venv with $PYTHON"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1
    "$VENV/bin/pip" install -q "$TORCH_SPEC" 2>&1 | grep -v "^WARNING: Location" ; true
    # The toolkit's own requirements, read from its setup.py (kenlm is git-only and audio-only).
    "$VENV/bin/python" - "$TOOLKIT/setup.py" > "$WORK/toolkit-requirements.txt" <<'EOF' || die "cannot read the toolkit's setup.py"
import ast, sys
tree = ast.parse(open(sys.argv[1]).read())
values = {}
for node in ast.walk(tree):
    if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "install_requires":
        values["install"] = ast.literal_eval(node.value)
    if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript)
            and ast.literal_eval(node.targets[0].slice) == "diffusers"):
        values["diffusers"] = ast.literal_eval(node.value)
for req in values["install"] + values["diffusers"]:
    if not req.startswith("kenlm"):
        print(req)
EOF
    echo "$TORCH_SPEC" > "$WORK/constraints.txt"
    echo "starlette<1" >> "$WORK/constraints.txt"
    "$VENV/bin/pip" install -q -r "$WORK/toolkit-requirements.txt" -c "$WORK/constraints.txt" 2>&1 | grep -v "^WARNING: Location"
    "$VENV/bin/pip" install -q --no-deps -e "$TOOLKIT" > "$WORK/pip-toolkit.log" 2>&1 || die "pip install -e $TOOLKIT: $(tail -3 "$WORK/pip-toolkit.log")"
    "$VENV/bin/python" -c "import huggingface_inference_toolkit, transformers, diffusers, torch" || die "the toolkit venv does not import"
    touch "$VENV/.seg2sat-ready"
fi
versions() { "$VENV/bin/python" -c "import importlib.metadata as m; print(' '.join(f'{p}=={m.version(p)}' for p in ('torch', 'transformers', 'diffusers', 'huggingface_hub', 'accelerate', 'starlette', 'uvicorn')))"; }
BEFORE=$(versions)
echo "toolkit venv: $BEFORE"

# ---------------------------------------------------------------- 2. the endpoint repository
rm -rf "$WORK/tiny" "$REPO"
(cd "$ROOT" && "$PROJECT_PYTHON" -m seg2sat make-tiny "$WORK/tiny" >/dev/null) || die "seg2sat make-tiny failed ($PROJECT_PYTHON)"
(cd "$ROOT" && "$PROJECT_PYTHON" endpoint/build_repository.py "$REPO" --weights "$WORK/tiny" >/dev/null) || die "build_repository.py failed"
pass "built $REPO: $(ls "$REPO" | tr '\n' ' ')"

# ---------------------------------------------------------------- 3. entrypoint.sh: install requirements.txt
if "$VENV/bin/pip" install -q -r "$REPO/requirements.txt" --no-cache-dir > "$WORK/pip.log" 2>&1; then
    pass "pip install -r requirements.txt"
else
    fail "pip install -r requirements.txt: $(tail -3 "$WORK/pip.log")"
fi
AFTER=$(versions)
if [ "$BEFORE" = "$AFTER" ]; then pass "requirements.txt changed none of: $AFTER"; else fail "requirements.txt changed the stack: $BEFORE -> $AFTER"; fi

# The dtype reaches from_pretrained on this diffusers (0.33 reads only torch_dtype=).
if OUT=$(cd "$WORK" && "$VENV/bin/python" - "$REPO" 2>/dev/null <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import torch, diffusers
from seg2sat.pipelines import dtype_kwargs, load_pipeline
pipe = load_pipeline(sys.argv[1], device="cpu", dtype=torch.float16)
got = {name: str(getattr(pipe, name).dtype) for name in ("unet", "controlnet", "vae", "text_encoder")}
print(f"diffusers {diffusers.__version__} keyword {list(dtype_kwargs(torch.float16))[0]}= -> {got}")
assert set(got.values()) == {"torch.float16"}, got
EOF
); then pass "half precision reaches from_pretrained: $OUT"; else fail "half precision does not reach from_pretrained: $OUT"; fi

# The tiny pipeline's tokenizer, written by transformers 5, tokenises alike under the toolkit's transformers.
TOKENS='import sys; from transformers import CLIPTokenizer; print(CLIPTokenizer.from_pretrained(sys.argv[1])("Aerial view of 31 Rue Molière, Lyon — ✓").input_ids)'
OURS=$(cd "$WORK" && "$PROJECT_PYTHON" -c "$TOKENS" "$REPO/tokenizer" 2>/dev/null | tail -1)
THEIRS=$(cd "$WORK" && "$VENV/bin/python" -c "$TOKENS" "$REPO/tokenizer" 2>/dev/null | tail -1)
if [ -n "$OURS" ] && [ "$OURS" = "$THEIRS" ]; then pass "tokenizer: same ids under both transformers versions (${#OURS} chars of ids)"
else fail "tokenizer differs or does not load: project [$OURS] vs toolkit [$THEIRS]"; fi

# ---------------------------------------------------------------- 4. start the web service
curl -s -o /dev/null "http://127.0.0.1:$PORT/" && die "port $PORT is busy; set PORT"
START=$EPOCHREALTIME
(cd "$TOOLKIT/src/huggingface_inference_toolkit" && exec env HF_MODEL_DIR="$REPO" HF_TASK= OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" \
    "$VENV/bin/uvicorn" webservice_starlette:app --host 127.0.0.1 --port "$PORT") > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null' EXIT
UP=""
for _ in $(seq 1 600); do
    if ! kill -0 $SERVER 2>/dev/null; then break; fi
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/health")" = 200 ]; then UP=1; break; fi
    sleep 0.2
done
STARTUP=$(awk "BEGIN { printf \"%.1f\", $EPOCHREALTIME - $START }")
if [ -n "$UP" ]; then
    pass "toolkit server up: GET /health 200 after ${STARTUP}s (process start to first 200, model loaded)"
else
    fail "toolkit server did not start; log tail:"; tail -30 "$WORK/server.log"; echo "RESULT: FAIL"; exit 1
fi
grep -q "Found custom pipeline" "$WORK/server.log" && pass "toolkit loaded the custom handler.py" || fail "toolkit did not report the custom handler"
grep -q "are not expected by .* and will be ignored" "$WORK/server.log" \
    && fail "from_pretrained ignored keywords: $(grep -o "Keyword arguments.*ignored" "$WORK/server.log" | head -1)" \
    || pass "no from_pretrained keyword was ignored"

# ---------------------------------------------------------------- 5. requests
"$VENV/bin/python" - "http://127.0.0.1:$PORT" <<'EOF'
import base64, io, json, statistics, sys, time, urllib.error, urllib.request
from PIL import Image

URL = sys.argv[1]
PALETTE = [(219, 14, 154), (147, 142, 123), (248, 12, 0), (169, 113, 1), (21, 83, 174), (25, 74, 38), (70, 228, 131)]

def mask(w, h):
    im = Image.new("RGB", (w, h), PALETTE[0])
    for i, c in enumerate(PALETTE):
        im.paste(c, (i * w // len(PALETTE), h // 3, (i + 1) * w // len(PALETTE), h))
    buf = io.BytesIO(); im.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()

def post(body, accept=None, path="/"):
    headers = {"Content-Type": "application/json"}
    if accept:
        headers["Accept"] = accept
    req = urllib.request.Request(URL + path, data=json.dumps(body).encode(), headers=headers, method="POST")
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status, r.headers.get("Content-Type"), r.read(), time.perf_counter() - start
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read(), time.perf_counter() - start

FAILS = 0


def check(ok, what):
    global FAILS
    FAILS += not ok
    print(("PASS " if ok else "FAIL ") + what, flush=True)

M = mask(128, 64)
PROMPT = "Aerial view of 31 Rue Molière, Lyon, France"
ours = {"inputs": PROMPT, "parameters": {"image": M, "seed": 7, "steps": 2}}

s, ct, body, dt = post(ours)
ans = json.loads(body) if s == 200 else {}
check(s == 200 and ct.startswith("application/json") and ans.get("seeds") == [7] and len(ans.get("images", [])) == 1,
      f"JSON request (no Accept): {s} {ct}, seeds {ans.get('seeds')}, {len(ans.get('images', []))} image(s), {dt:.2f}s")
json_png = base64.b64decode(ans["images"][0]) if ans else b""

s, ct, body, dt = post(ours, accept="application/json", path="/predict")
check(s == 200 and json.loads(body).get("images", [None])[0] == ans.get("images", [0])[0],
      f"POST /predict Accept: application/json: {s}, same image for the same seed, {dt:.2f}s")

s, ct, body, dt = post(ours, accept="image/png")
ok = s == 200 and ct == "image/png" and body[:8] == b"\x89PNG\r\n\x1a\n"
size = Image.open(io.BytesIO(body)).size if ok else None
check(ok and size == (128, 64) and body == json_png,
      f"Accept: image/png: {s} {ct}, {len(body)} bytes, PNG {size}, identical to the JSON answer's image: {body == json_png}")

s, ct, body, dt = post(ours, accept="image/jpeg")
check(s == 200 and ct == "image/jpeg" and body[:3] == b"\xff\xd8\xff", f"Accept: image/jpeg: {s} {ct}, JPEG bytes")

d2m = {"inputs": PROMPT, "prompt": PROMPT, "image": M, "steps": "2", "seed": "12345678901234567"}
s, ct, body, dt = post(d2m, accept="image/png")
check(s == 200 and ct == "image/png" and body[:8] == b"\x89PNG\r\n\x1a\n",
      f"Drawing2Map payload (flat, numbers as text) with Accept: image/png: {s} {ct}, {len(body)} bytes")
s, ct, body, dt = post(d2m)
ans2 = json.loads(body) if s == 200 else {}
check(s == 200 and ans2.get("image") and ans2.get("seeds") == [12345678901234567],
      f"Drawing2Map payload as JSON: {s}, has 'image' (old clients) and the 17-digit seed kept: {ans2.get('seeds')}")

region = {"inputs": PROMPT, "parameters": {"image": M, "mode": "inpaint", "init_image": ans.get("images", [""])[0],
                                           "region": [32, 16, 48, 32], "seed": 3, "steps": 2}}
s, ct, body, dt = post(region)
check(s == 200, f"inpaint request (StableDiffusionControlNetInpaintPipeline on this diffusers): {s} {body[:120] if s != 200 else ''}")

bad = [
    ("steps 0", {"inputs": PROMPT, "parameters": {"image": M, "steps": 0}}, "parameters.steps"),
    ("bad base64", {"inputs": PROMPT, "parameters": {"image": "not base64!"}}, "parameters.image"),
    ("no mask", {"inputs": PROMPT}, "parameters.image"),
    ("unknown parameter", {"inputs": PROMPT, "parameters": {"image": M, "stepz": 3}}, "stepz"),
    ("huge steps in Drawing2Map payload", {"inputs": PROMPT, "prompt": PROMPT, "image": M, "steps": "9999"}, "steps"),
]
for name, payload, field in bad:
    for accept in (None, "image/png"):
        s, ct, body, dt = post(payload, accept=accept)
        err = json.loads(body).get("error", "") if ct and ct.startswith("application/json") else ""
        check(s == 400 and field in err and dt < 1.0,
              f"bad request ({name}, Accept {accept or 'none'}): {s} in {dt * 1000:.0f} ms, error: {err[:90]!r}")

s, ct, body, dt = post({"inputs": PROMPT, "parameters": {"image": M, "num_images": 2, "steps": 1}}, accept="image/png")
err = json.loads(body).get("error", "") if s == 400 else ""
check(s == 400 and "num_images" in err,
      f"two images with Accept: image/png: {s} (after generating: the toolkit hides Accept from handlers), error: {err[:80]!r}")

s, ct, body, dt = post({"inputs": PROMPT, "parameters": {"image": M, "steps": 1}}, accept="text/html")
check(s == 400, f"Accept: text/html (the toolkit refuses it after the handler ran): {s}")

# Per-request time: a Drawing2Map request (20 steps) on a 256x256 mask, Accept: image/png.
times = []
for seed in range(3):
    s, ct, body, dt = post({"inputs": PROMPT, "prompt": PROMPT, "image": mask(256, 256), "steps": "20", "seed": str(seed)},
                           accept="image/png")
    times.append(dt)
check(s == 200, "timing: 3 requests, 20 steps, 256x256, Accept: image/png: "
      + ", ".join(f"{t:.2f}s" for t in times) + f" (median {statistics.median(times):.2f}s, tiny pipeline on CPU)")
sys.exit(3 if FAILS else 0)
EOF
RC=$?
kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; trap - EXIT
case $RC in 0) ;; 3) FAILS=$((FAILS + 1)) ;; *) fail "the request checks crashed (exit $RC)" ;; esac
echo "handler durations the toolkit logged (ms): $(grep -o 'Duration: [0-9.]* ms' "$WORK/server.log" | sed 's/Duration: //; s/ ms//' | tr '\n' ' ')"
if [ $FAILS -eq 0 ]; then echo "RESULT: PASS"; else echo "RESULT: FAIL (see the FAIL lines; server log: $WORK/server.log)"; exit 1; fi
