"""A Redis Cluster client whose pipelines run Lua scripts as a plain client's do.

redis-py's cluster pipeline refuses EVALSHA, and its plain pipeline's care
that the server knows each script first is missing there. feedsift's scripts
pass every key in KEYS under one hash tag, so each call has one slot and can
travel in a pipeline like any command. A primary that never saw a script, or
lost it in a restart or a fail-over, answers NOSCRIPT: the refused calls are
sent again once the scripts are loaded on every primary. A refused call did
nothing, so sending it again is exact.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.cluster import ClusterPipeline
from redis.exceptions import NoScriptError


class ScriptPipeline(ClusterPipeline):
    scripts: dict[str, str]

    def evalsha(self, sha: str, numkeys: int, *keys_and_args):
        """Queued like any command (redis-py refuses it in a cluster pipeline): its keys share one slot."""
        return self.pipeline_execute_command("EVALSHA", sha, numkeys, *keys_and_args)

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        sent = list(self._execution_strategy.command_queue)
        replies = super().execute(raise_on_error=False)
        refused = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        for sha in {sent[n].args[1] for n in refused}:
            if sha in self.scripts:
                self.parent_execute_command("SCRIPT LOAD", self.scripts[sha])
        if refused:
            for n in refused:
                self.pipeline_execute_command(*sent[n].args, **sent[n].options)
            for n, reply in zip(refused, super().execute(raise_on_error=False)):
                replies[n] = reply
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies


class Cluster(redis.RedisCluster):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scripts: dict[str, str] = {}  # sha -> source of every script registered through this client

    def register_script(self, script):
        registered = super().register_script(script)
        self.scripts[registered.sha] = registered.script
        return registered

    def pipeline(self, transaction=None, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)
        pipe.__class__ = ScriptPipeline  # the same pipeline, that also sends refused scripts again
        pipe.scripts = self.scripts
        return pipe
