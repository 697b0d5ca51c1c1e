"""feedsift's errors. Third-party exceptions are translated where they enter.

FeedsiftError
├── FetchError                  the feed could not be downloaded
│   ├── TransientFetchError     worth retrying: time-out, connection reset, 5xx, 429
│   └── PermanentFetchError     not worth retrying: 4xx, too big, too many redirects
│       └── BlockedURLError     refused before connecting: scheme or address not allowed
├── FeedError                   the document is not a usable feed
└── InternalError               an unexpected failure while reading a feed (a bug), stored all the same
"""


class FeedsiftError(Exception):
    #: Short machine-readable name stored with the error.
    kind = "error"


class FetchError(FeedsiftError):
    kind = "fetch"


class TransientFetchError(FetchError):
    kind = "transient"

    def __init__(self, message: str = "", retry_after: str = ""):
        super().__init__(message)
        #: The server's `Retry-After` header, if it sent one.
        self.retry_after = retry_after


class PermanentFetchError(FetchError):
    kind = "permanent"


class BlockedURLError(PermanentFetchError):
    kind = "blocked"


class FeedError(FeedsiftError):
    kind = "not_a_feed"


class InternalError(FeedsiftError):
    """Something unexpected broke while reading a feed; stored like any other error, with its type."""

    kind = "internal"
