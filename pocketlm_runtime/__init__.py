"""pocketlm's runtime: tokenizer, chat template, sampler and generation loop.

Standard library only, so the same code runs in CPython and inside Pyodide. The model
is reached through a narrow session protocol (:mod:`pocketlm_runtime.session`) with two
implementations: onnxruntime natively (:mod:`pocketlm_runtime.native`) and
onnxruntime-web in the browser (:mod:`pocketlm_runtime.browser`).
"""

__version__ = "0.1.0"
