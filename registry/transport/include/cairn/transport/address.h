// Node addresses as users write them: HOST:PORT or [IPv6]:PORT, optionally
// with tls:// (TLS to this node) or plain:// (no TLS to this node, even when
// a CA is configured) in front. Without a scheme, TLS is used when a CA is
// configured (--tls-ca), as before.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace cairn {

struct NodeAddress {
  std::string host;  // without brackets
  int port = 0;
  enum class Scheme { kDefault, kTls, kPlain } scheme = Scheme::kDefault;
  // HOST:PORT as gRPC takes it ([v6]:PORT for IPv6), without the scheme.
  std::string target() const;
};

// Parses `text`, refusing at once (InvalidArgument naming the expected form)
// what could only fail later after a timeout: a scheme other than tls://, a
// path, a missing or out-of-range port, an empty or malformed host. Port 0 is
// allowed only with allow_port_zero (a listen address).
absl::StatusOr<NodeAddress> ParseNodeAddress(std::string_view text, bool allow_port_zero = false);

}  // namespace cairn
