#include "cairn/transport/address.h"

#include <arpa/inet.h>

#include "absl/strings/ascii.h"
#include "cairn/strings.h"

namespace cairn {

namespace {

constexpr std::string_view kForm = "HOST:PORT or [IPv6]:PORT, optionally after tls:// or plain://";

absl::Status Bad(std::string_view text, std::string_view why) {
  return absl::InvalidArgumentError(
      StrCat("bad node address \"", text, "\": ", why, " (expected ", kForm, ")"));
}

bool ValidHostName(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  for (char c : h) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_') {
      return false;
    }
  }
  return h.front() != '.' && h.front() != '-';
}

}  // namespace

std::string NodeAddress::target() const {
  if (host.find(':') != std::string::npos) return StrCat("[", host, "]:", port);
  return StrCat(host, ":", port);
}

absl::StatusOr<NodeAddress> ParseNodeAddress(std::string_view text, bool allow_port_zero) {
  NodeAddress a;
  std::string_view rest = text;
  if (size_t scheme = rest.find("://"); scheme != std::string_view::npos) {
    std::string name = absl::AsciiStrToLower(std::string(rest.substr(0, scheme)));
    if (name == "tls") {
      a.scheme = NodeAddress::Scheme::kTls;
    } else if (name == "plain") {
      a.scheme = NodeAddress::Scheme::kPlain;
    } else {
      return Bad(text, StrCat("scheme ", name, ":// is not supported"));
    }
    rest.remove_prefix(scheme + 3);
  }
  if (rest.find('/') != std::string_view::npos) return Bad(text, "a node address has no path");
  std::string_view host, port;
  if (!rest.empty() && rest.front() == '[') {
    size_t close = rest.find(']');
    if (close == std::string_view::npos) return Bad(text, "no ] after the IPv6 address");
    host = rest.substr(1, close - 1);
    in6_addr v6;
    if (inet_pton(AF_INET6, std::string(host).c_str(), &v6) != 1) {
      return Bad(text, "not an IPv6 address in brackets");
    }
    if (close + 1 >= rest.size() || rest[close + 1] != ':') return Bad(text, "no :PORT");
    port = rest.substr(close + 2);
  } else {
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) return Bad(text, "no :PORT");
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return Bad(text, "an IPv6 address goes in brackets, [::1]:PORT");
    }
    if (!ValidHostName(host)) return Bad(text, "not a host name or IPv4 address");
  }
  int p = -1;
  if (port.empty() || port.size() > 5 || !ParseInt(port, &p) ||
      !absl::ascii_isdigit(static_cast<unsigned char>(port.front())) || p > 65535 ||
      (p == 0 && !allow_port_zero)) {
    return Bad(text, StrCat("port must be ", allow_port_zero ? 0 : 1, "-65535"));
  }
  a.host = std::string(host);
  a.port = p;
  return a;
}

}  // namespace cairn
