# One image for api, worker, beat, migrate and ui; docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY tagloop ./tagloop
COPY services ./services
COPY workers ./workers
COPY ui ./ui
RUN pip install .
ENV TAGLOOP_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8000 8501
CMD ["tagloop", "up"]
