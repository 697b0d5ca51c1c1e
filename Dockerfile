FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY workers ./workers
COPY models ./models
COPY examples ./examples
RUN pip install --no-cache-dir . flower
RUN useradd --create-home feedsift
USER feedsift
ENV FEEDSIFT_REDIS_URL=redis://redis:6379/0
CMD ["feedsift", "worker"]
