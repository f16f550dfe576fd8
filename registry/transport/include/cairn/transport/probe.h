// Names why a node cannot be reached, in about one round trip.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "cairn/transport/address.h"
#include "cairn/transport/channel.h"

namespace cairn {

// Connects to `a` as a channel would (TLS with `tls` when `use_tls`) and
// returns Unavailable naming the failure: the connect error (refused,
// unresolvable), a plaintext client at a TLS port or the reverse, a
// certificate from another CA, a name mismatch, a client certificate the node
// requires or refuses. OK when nothing is wrong, or when the node is only
// slow to answer (within `ms` per step): then the caller keeps waiting.
absl::Status ProbeNode(const NodeAddress& a, bool use_tls, const TlsOptions& tls, int ms);

// How long a TCP handshake with the node at `address` takes: one round trip
// of the path, without any queue of ours (timed from the SYN, after the name
// lookup). 0 when it cannot connect within `ms` (the connection is closed at
// once; the node sees an empty one).
double HandshakeSeconds(const std::string& address, int ms);

// The round trip to `address`'s host: the shortest of three HandshakeSeconds
// on a detached thread, at most once per host every 10 minutes (every 10 s
// while they fail); 0 until one has answered. Never blocks on the network.
double CachedRoundTrip(const std::string& address);

}  // namespace cairn
