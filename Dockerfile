# One image for api, worker, beat, migrate and ui; docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# Every dependency at the exact, hashed version of requirements.lock: the image runs what CI
# tested (torch 2.9.1 from PyPI, whose Linux wheels carry the CUDA libraries, so the same image
# runs on a GPU host). Before the code is copied: a code change does not reinstall torch.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY tagloop ./tagloop
COPY services ./services
COPY workers ./workers
COPY ui ./ui
RUN pip install --no-deps .
ENV TAGLOOP_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8000 8501
# Others can reach a container's UI: nobody is signed in as admin by default.
CMD ["tagloop", "up", "--no-single-user"]
