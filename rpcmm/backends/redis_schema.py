"""The Redis backend's data model: key names, Lua scripts and the change channel.

Every key starts with a namespace (default ``rpcmm``) so several deployments, or tests, share
one Redis server without seeing each other:

``<ns>:host:<host>``
    A set of the topics ``host`` serves, with a TTL (``PEXPIRE``) of the host's heartbeat TTL.
    It is the host's one liveness record: a heartbeat refreshes this key only, whatever the
    number of topics, and when heartbeats stop Redis deletes it, which removes the host from
    every topic at once.
``<ns>:topic:<topic>``
    A set of the hosts that announced ``topic``. It is an index, not the truth: a member counts
    only while its host record exists and lists the topic, so a host that expired is never
    returned even before its stale membership is pruned. Lookups prune such members.
``<ns>:changes``
    The pub/sub channel. Each message is one topic name whose set of hosts changed (a host
    added or removed, or pruned after it expired); clients drop that topic from their caches.

The scripts run atomically on the server, so an announce never leaves the index half-written
and a lookup costs one round trip however many hosts a topic has. Scripts touch keys they
derive from arguments, which a single server and Sentinel allow and Redis Cluster does not.
"""

__all__ = ["DEFAULT_NAMESPACE", "KeySchema", "ANNOUNCE_SCRIPT", "WITHDRAW_SCRIPT", "LOOKUP_SCRIPT"]

DEFAULT_NAMESPACE = "rpcmm"


class KeySchema:
    """Key and channel names under one namespace (a non-empty string without white space)."""

    def __init__(self, namespace=DEFAULT_NAMESPACE):
        self.namespace = namespace
        self.host_prefix = f"{namespace}:host:"
        self.topic_prefix = f"{namespace}:topic:"
        self.channel = f"{namespace}:changes"

    def host_key(self, host):
        return self.host_prefix + host

    def topic_key(self, topic):
        return self.topic_prefix + topic


#: Publish a host's full topic set and refresh its TTL; one heartbeat of one host.
#: ARGV: host prefix, topic prefix, channel, host, ttl in ms, topic...
#: Returns the topics whose hosts changed (added or removed here), each also published.
#: An unchanged heartbeat of a live host writes one PEXPIRE and publishes nothing.
ANNOUNCE_SCRIPT = """
local host_key = ARGV[1] .. ARGV[4]
local host, ttl = ARGV[4], tonumber(ARGV[5])
local wanted = {}
for i = 6, #ARGV do wanted[ARGV[i]] = true end
local changed = {}
for _, topic in ipairs(redis.call('SMEMBERS', host_key)) do
  if wanted[topic] then
    wanted[topic] = nil
  else
    redis.call('SREM', ARGV[2] .. topic, host)
    redis.call('SREM', host_key, topic)
    changed[#changed + 1] = topic
  end
end
for topic in pairs(wanted) do
  redis.call('SADD', ARGV[2] .. topic, host)
  redis.call('SADD', host_key, topic)
  changed[#changed + 1] = topic
end
redis.call('PEXPIRE', host_key, ttl)
for _, topic in ipairs(changed) do redis.call('PUBLISH', ARGV[3], topic) end
return changed
"""

#: Remove a host now. ARGV: host prefix, topic prefix, channel, host.
#: Returns (and publishes) the topics it served.
WITHDRAW_SCRIPT = """
local host_key = ARGV[1] .. ARGV[4]
local topics = redis.call('SMEMBERS', host_key)
for _, topic in ipairs(topics) do
  redis.call('SREM', ARGV[2] .. topic, ARGV[4])
  redis.call('PUBLISH', ARGV[3], topic)
end
redis.call('DEL', host_key)
return topics
"""

#: The live hosts of one topic. KEYS[1]: the topic's set. ARGV: host prefix, channel, topic.
#: A member is live while its host record exists and lists the topic: SISMEMBER on a missing
#: key is 0, so no TTL value (-1 no expiry, -2 missing) is ever interpreted. Dead members are
#: pruned and the change published, so other caches drop the topic too.
LOOKUP_SCRIPT = """
local live, pruned = {}, false
for _, host in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('SISMEMBER', ARGV[1] .. host, ARGV[3]) == 1 then
    live[#live + 1] = host
  else
    redis.call('SREM', KEYS[1], host)
    pruned = true
  end
end
if pruned then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return live
"""
