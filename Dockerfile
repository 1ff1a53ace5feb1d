# One image for api, worker, beat, migrate and ui; docker-compose.yml picks the command.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# torch from PyTorch's CPU wheel index by default (PyPI's Linux wheels pull in gigabytes of
# CUDA libraries). For a GPU image pick a CUDA index, e.g.
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
# The pins match pyproject.toml (tests/unit/test_dockerfile.py checks), so `pip install .`
# finds them satisfied and keeps this build.
# Before the code is copied: a code change does not reinstall torch.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "${TORCH_INDEX}" torch==2.9.1 torchaudio==2.9.1
COPY pyproject.toml README.md ./
COPY tagloop ./tagloop
COPY services ./services
COPY workers ./workers
COPY ui ./ui
RUN pip install .
ENV TAGLOOP_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8000 8501
# Others can reach a container's UI: nobody is signed in as admin by default.
CMD ["tagloop", "up", "--no-single-user"]
