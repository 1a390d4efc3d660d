"""`alexnet-cifar serve`: a local web page to watch runs and try a model on your own images
(the optional `[serve]` extra: FastAPI and uvicorn)."""
