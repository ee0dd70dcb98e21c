# The ttc API image for a deployment whose vLLM runs as separate servers (TTC_BACKEND=remote):
# it needs the tokenizer and config of the served model, not vLLM itself.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY strategies ./strategies
COPY verifiers ./verifiers
COPY service ./service
COPY api ./api
COPY harness ./harness
COPY ttc ./ttc
COPY cli ./cli
# the service's packages (the base install is the SDK alone); no engine: vLLM runs as its own servers
RUN pip install --no-cache-dir '.[server]' && useradd --create-home ttc
# a non-root user whose home holds every cache and data directory it writes (models' tokenizers, Redis)
USER ttc
WORKDIR /home/ttc
ENV TTC_HOST=0.0.0.0 TTC_PORT=8000 HF_HOME=/home/ttc/.cache/huggingface XDG_CACHE_HOME=/home/ttc/.cache
EXPOSE 8000
CMD ["ttc", "serve"]
