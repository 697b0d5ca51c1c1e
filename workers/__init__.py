"""Everything of feedsift that touches the network, the queue or Redis."""
