// A hostile HTTP/2 client for tests: over one plaintext (h2c, prior knowledge)
// connection it opens several gRPC calls, declares a large message on each and
// sends most of it, then stalls with the connection open. A server that buffers
// every partial message it is sent holds streams x send_bytes of memory per
// connection. Plain POSIX sockets only: no gRPC or nghttp2 client in between,
// so nothing on the client side limits what is sent.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace cairn::testing {

struct StallOptions {
  std::string host = "127.0.0.1";  // an IPv4 or IPv6 literal, or a name
  int port = 0;
  std::string path;             // e.g. "/cairn.v1.Publish/PutObject"
  int streams = 12;             // concurrent streams opened on ONE connection
  uint32_t declared_bytes = 0;  // the gRPC length prefix each stream declares
  uint64_t send_bytes = 0;      // message bytes each stream sends before stalling
  int seconds_budget = 30;      // give up sending after this long (real time)
};

struct StallResult {
  uint64_t bytes_sent = 0;  // message bytes (DATA payload after the 5-byte gRPC
                            // prefix) written within the server's flow-control
                            // windows, over all streams
  int streams_opened = 0;   // HEADERS sent (at most the server's
                            // SETTINGS_MAX_CONCURRENT_STREAMS)
  int streams_reset = 0;    // RST_STREAM frames received
  int streams_ended = 0;    // streams the server ended with END_STREAM
                            // (trailers, e.g. an error status)
  bool goaway = false;      // server sent GOAWAY
  bool connection_closed = false;
  std::string error;  // socket / protocol error, if any
};

// Opens the connection and streams, sends as much as flow control allows up to
// send_bytes per stream, then returns with the connection open (stalled): no
// more DATA is sent, and no stream is ever half-closed. Destroying the object
// closes the socket. Returns nullptr (with out->error set) only if the TCP
// connection could not be made. Never throws.
class StallConnection {
 public:
  static std::unique_ptr<StallConnection> Open(const StallOptions& options, StallResult* out);
  ~StallConnection();
  StallConnection(const StallConnection&) = delete;
  StallConnection& operator=(const StallConnection&) = delete;

  // Reads and answers (SETTINGS ack, PING ack) whatever the server sent, for
  // up to `timeout_ms`, without sending DATA; adds what it saw to `out`. Call
  // it while stalled to learn whether the server resets the streams later.
  void Poll(int timeout_ms, StallResult* out);

 private:
  struct State;
  explicit StallConnection(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

}  // namespace cairn::testing
