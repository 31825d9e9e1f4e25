"""``gream serve``: an HTTP recommendation service over a trained model (FastAPI + uvicorn),
with request batching in front of the trie-constrained decoder. See :mod:`gream_verl.serve.app`."""
