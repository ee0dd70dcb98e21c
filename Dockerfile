# The ttc API image for a deployment whose vLLM runs as separate servers (TTC_BACKEND=remote):
# it needs the tokenizer and config of the served model, not vLLM itself.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY strategies ./strategies
COPY verifiers ./verifiers
COPY api ./api
COPY harness ./harness
COPY ttc ./ttc
RUN pip install --no-cache-dir . && useradd --create-home ttc
USER ttc
ENV TTC_HOST=0.0.0.0 TTC_PORT=8000
EXPOSE 8000
CMD ["ttc", "serve"]
