"""Pure logic of feedsift: text cleaning, topic model and MinHash signatures.

Nothing in this package touches the network, Redis or Celery, so every part
is testable in milliseconds and reusable outside the service.
"""
