"""The HTTP service: FastAPI app, request/response models, error envelope."""
