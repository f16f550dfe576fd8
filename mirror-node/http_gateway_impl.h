// The HTTP gateway's insides, shared by its source files:
//   http_gateway.cc  connections: accept, limits, TLS, the request loop, routing
//   http_files.cc    /v1/ endpoints and the verified file streamer
//   hf_api.cc        the Hugging Face Hub endpoints
//   http_status.cc   /metrics and the status page
// Not part of the node's interface.
#pragma once

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
// clang-format off
#include <utility>
// clang-format on
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "cairn/repository.h"
#include "cairn/v1/objects.pb.h"
#include "cairn/v1/service.pb.h"
#include "http_gateway.h"
#include "on_demand.h"

namespace cairn::node {

namespace gw {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Request = http::request<http::string_body>;
using Headers = std::vector<std::pair<std::string, std::string>>;
using ErrorCode = boost::system::error_code;

// What a write did: its error, and how many bytes reached the socket
// before it (all of them when there is none).
struct Written {
  ErrorCode ec;
  std::size_t bytes = 0;
};

// Waits until the socket's send queue is empty (acknowledged), no progress
// for `timeout`, or the client sends again (http_stream.cc).
asio::awaitable<void> WaitAcknowledged(tcp::socket& sock, std::chrono::seconds timeout);

// A client connection, plain or TLS: the only part that knows which.
class Conn {
 public:
  virtual ~Conn() = default;
  virtual asio::awaitable<ErrorCode> ReadHeader(beast::flat_buffer& buffer,
                                                http::request_parser<http::string_body>& parser,
                                                std::chrono::seconds timeout) = 0;
  virtual asio::awaitable<ErrorCode> ReadBody(beast::flat_buffer& buffer,
                                              http::request_parser<http::string_body>& parser,
                                              std::chrono::seconds timeout) = 0;
  virtual asio::awaitable<Written> Write(std::vector<asio::const_buffer> buffers,
                                         std::chrono::seconds timeout) = 0;
  // Sends `length` bytes of file `fd` from `offset` straight from the page
  // cache (sendfile: no copy through user space). Plaintext only: a TLS
  // connection answers operation_not_supported and sends nothing. A file
  // shorter than asked answers eof after what it had.
  virtual asio::awaitable<Written> SendFile(int fd, uint64_t offset, uint64_t length,
                                            std::chrono::seconds timeout) = 0;
  virtual bool CanSendFile() const = 0;
  // Waits until the kernel has delivered what was written (the socket's
  // send queue is empty), or the connection ends, or `timeout` passes
  // without progress: an answer counts as in progress until then, so a
  // graceful stop does not drop bytes still queued (a container's network
  // goes with its process).
  virtual asio::awaitable<void> WaitSent(std::chrono::seconds timeout) = 0;
  // Whether bytes from the client wait to be read (a pipelined request).
  virtual bool HasInput() = 0;
  // Ends the connection at once (a body that cannot be completed honestly).
  virtual void Abort() = 0;
  // Sends what is queued and closes the sending side.
  virtual asio::awaitable<void> Close() = 0;
  std::string peer;  // the client's address, without port
};

// One request being answered: what the handlers write and the counters read.
struct Exchange {
  Conn& conn;
  const Request& req;
  std::string endpoint = "other";  // a fixed label, for /metrics
  std::string_view target;         // the request target, origin-form (absolute form stripped)
  unsigned status = 0;             // set when the answer's head is sent
  bool https = false;
};

// A small answer held in memory.
struct Answer {
  http::status status = http::status::ok;
  std::string body;
  std::string content_type = "application/json";
  Headers headers;
};
Answer Error(http::status st, std::string_view message);
// NotFound -> 404, InvalidArgument -> 400, others 500.
Answer FromStatus(const absl::Status& s);

// A release as a handler sees it: the verified manifest this node holds, or
// one being fetched on demand (`fetch` set: its bytes may still be arriving).
struct Release {
  std::string digest;
  std::shared_ptr<const cairn::v1::Manifest> manifest;
  std::shared_ptr<OnDemand::Fetch> fetch;
};

// A file about to be streamed, with the headers its endpoint adds.
struct FileToSend {
  cairn::v1::FileEntry file;
  cairn::v1::ChunkList chunks;
  std::string etag;  // quoted
  Headers headers;
  std::shared_ptr<OnDemand::Fetch> fetch;    // set: wait for chunks still arriving
  std::string release_name, release_digest;  // to repair it from upstream
  // Chunks for a client that verifies each one (POST /v1/chunks): the whole
  // body, never a range; `prefix` goes first; no re-hash beyond what the store
  // does (as for Chunks.GetMany).
  bool chunks_for_client = false;
  std::string prefix;
};

// Bytes of file batches read and not yet written, node-wide: past
// HttpOptions::max_read_ahead_bytes, responses read small batches and none
// ahead, so memory stays bounded however many clients read slowly.
struct ReadBudget {
  std::atomic<uint64_t> held{0};
};

// Counters behind /metrics, by endpoint label and status code.
struct RequestCounts {
  absl::Mutex mu;
  std::map<std::pair<std::string, unsigned>, uint64_t> by_endpoint ABSL_GUARDED_BY(mu);
};

}  // namespace gw

struct HttpGateway::Impl {
  Impl(Repository* r, const HttpOptions& o)
      : repo(r), opts(o), work(2), fetch_pool(4), acceptor(ioc) {}
  Repository* repo;
  HttpOptions opts;
  gw::asio::thread_pool work;        // chunk reads and hashing, off the I/O threads
  gw::asio::thread_pool fetch_pool;  // upstream round trips of on-demand fetches
  std::atomic<size_t> connections{0};
  std::atomic<size_t> answering{0};   // requests being answered
  std::atomic<bool> draining{false};  // Drain: no new requests on kept-alive connections
  HttpCounters counters;
  gw::RequestCounts request_counts;
  gw::ReadBudget read_budget;
  std::string address;
  int port = 0;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  std::unique_ptr<gw::asio::ssl::context> tls;  // null: plaintext

  // Per client address: connections open, and a token bucket of requests.
  struct PeerState {
    size_t connections = 0;
    double tokens = 0;
    std::chrono::steady_clock::time_point refilled;
  };
  absl::Mutex peers_mu;
  absl::flat_hash_map<std::string, PeerState> peers ABSL_GUARDED_BY(peers_mu);

  // One model's releases and tags (repo->List of the name), kept until the
  // node's feed moves (every publish, tag move or replicated release does).
  absl::StatusOr<cairn::v1::ListResponse> ListModel(const std::string& name);
  absl::Mutex lists_mu;
  uint64_t lists_feed_head ABSL_GUARDED_BY(lists_mu) = 0;
  absl::flat_hash_map<std::string, cairn::v1::ListResponse> lists ABSL_GUARDED_BY(lists_mu);
  // Parsed chunk lists of small files by root digest (immutable).
  absl::Mutex chunk_lists_mu;
  absl::flat_hash_map<std::string, cairn::v1::ChunkList> chunk_lists
      ABSL_GUARDED_BY(chunk_lists_mu);

  // Parsed manifests by "name@digest" (releases are immutable).
  static constexpr size_t kManifestsKept = 256;
  absl::Mutex manifests_mu;
  absl::flat_hash_map<std::string, std::shared_ptr<const cairn::v1::Manifest>> manifests
      ABSL_GUARDED_BY(manifests_mu);

  // Git blob ids of small files, by "sha256:..." (computing one reads the file).
  absl::Mutex blob_ids_mu;
  absl::flat_hash_map<std::string, std::string> blob_ids ABSL_GUARDED_BY(blob_ids_mu);

  // ---- http_gateway.cc ----
  gw::asio::awaitable<void> Accept();
  gw::asio::awaitable<void> Serve(gw::tcp::socket socket);
  // Answers one request; false when the connection must close.
  gw::asio::awaitable<bool> Handle(gw::Exchange& x);
  // Takes one request from `peer`'s bucket; false when it is empty.
  bool TakeToken(const std::string& peer);
  gw::asio::awaitable<bool> SendAnswer(gw::Exchange& x, gw::Answer a);
  // Sends a response head (and nothing else); false on a write error.
  gw::asio::awaitable<bool> SendHead(gw::Exchange& x, gw::http::response_header<>& head);
  // Runs `fn` on the work pool and resumes on the caller's thread.
  template <typename F>
  auto OffLoop(F fn) -> gw::asio::awaitable<decltype(fn())> {
    using R = decltype(fn());
    co_return co_await gw::asio::co_spawn(
        work, [fn = std::move(fn)]() mutable -> gw::asio::awaitable<R> { co_return fn(); },
        gw::asio::use_awaitable);
  }

  // Runs `fn` on the fetch pool (it may block on the network).
  template <typename F>
  auto OnFetchPool(F fn) -> gw::asio::awaitable<decltype(fn())> {
    using R = decltype(fn());
    co_return co_await gw::asio::co_spawn(
        fetch_pool, [fn = std::move(fn)]() mutable -> gw::asio::awaitable<R> { co_return fn(); },
        gw::asio::use_awaitable);
  }

  // ---- http_files.cc ----
  // Pull-through: when `ref` of `name` is not held and the gateway has an
  // OnDemand, asks the upstreams; the release being fetched, or nullopt.
  // When the node has no room for it (capacity), `*no_room` becomes a 507
  // naming why.
  gw::asio::awaitable<std::optional<gw::Release>> FetchOnDemand(const std::string& name,
                                                                const std::string& ref,
                                                                const std::string& first_path,
                                                                gw::Answer* no_room);
  // Waits (without holding a thread) until `present` or the fetch ends;
  // whether `present` came true.
  gw::asio::awaitable<bool> WaitFor(const std::function<bool()>& present,
                                    const OnDemand::Fetch& fetch);
  // Waits until the chunk lists and chunks of `files` are held.
  gw::asio::awaitable<bool> WaitForFiles(const gw::Release& rel,
                                         const std::vector<const cairn::v1::FileEntry*>& files);
  gw::Answer Releases(const std::string& name);
  gw::asio::awaitable<bool> V1File(gw::Exchange& x, const std::string& name, const std::string& ref,
                                   const std::string& path);
  gw::asio::awaitable<bool> V1Chunk(gw::Exchange& x, const std::string& digest);
  gw::asio::awaitable<bool> PostChunks(gw::Exchange& x);
  // A held release by version, tag or "@sha256:..." (version first).
  absl::StatusOr<gw::Release> LoadRelease(const std::string& name, const std::string& ref);
  absl::StatusOr<gw::Release> LoadByDigest(const std::string& name, const std::string& digest);
  absl::StatusOr<gw::FileToSend> PrepareFile(const cairn::v1::FileEntry& f);
  // PrepareFile, waiting for the chunk list of a release being fetched.
  gw::asio::awaitable<absl::StatusOr<gw::FileToSend>> PrepareFileOf(const gw::Release& rel,
                                                                    const cairn::v1::FileEntry& f);
  // Streams `f` (Range, If-None-Match, If-Range, HEAD), every chunk verified
  // before a byte of it is sent.
  gw::asio::awaitable<bool> SendFile(gw::Exchange& x, gw::FileToSend f);

  // ---- hf_api.cc ----
  gw::asio::awaitable<bool> HfApi(gw::Exchange& x, const std::vector<std::string_view>& seg);
  gw::asio::awaitable<bool> HfFile(gw::Exchange& x, const std::vector<std::string_view>& seg);
  gw::asio::awaitable<bool> HfTree(gw::Exchange& x, const std::vector<std::string_view>& seg,
                                   const std::string& name, const gw::Release& rel);
  gw::asio::awaitable<bool> HfPathsInfo(gw::Exchange& x, const gw::Release& rel);
  // A Hub revision of `name`: main/HEAD (the `latest` tag, else the newest
  // release), a 40-hex commit id, a version or a tag. On failure `error`
  // holds the answer (RepoNotFound or RevisionNotFound).
  std::optional<gw::Release> HfRelease(const std::string& name, const std::string& rev,
                                       gw::Answer* error);
  gw::Answer HfInfo(const std::string& name, const gw::Release& rel, bool blobs);
  // The git blob id of a file: of its LFS pointer, or of its bytes (read and
  // verified for files below the LFS threshold; remembered).
  absl::StatusOr<std::string> BlobId(const cairn::v1::FileEntry& f);
  // Fills in blob ids for `files` on the work pool.
  gw::asio::awaitable<absl::StatusOr<std::vector<std::string>>> BlobIds(
      const gw::Release& rel, std::vector<const cairn::v1::FileEntry*> files);
  // HfRelease, then on demand through the federation.
  gw::asio::awaitable<std::optional<gw::Release>> HfReleaseOrFetch(const std::string& name,
                                                                   const std::string& rev,
                                                                   const std::string& first_path,
                                                                   gw::Answer* error);

  // ---- http_status.cc ----
  gw::Answer Metrics();
  gw::Answer StatusPage();
  // Remembers an error for the status page (the last kRecentErrors).
  void NoteError(std::string what);
  // A chunk found damaged when read to be served (the store dropped it):
  // counted, logged and listed, whether or not a response got that far.
  void NoteDamage(const std::string& path, const absl::Status& st);
  static constexpr size_t kRecentErrors = 20;
  absl::Mutex status_mu;
  std::function<std::vector<cairn::v1::UpstreamStatus>()> upstream_status
      ABSL_GUARDED_BY(status_mu);
  std::deque<std::pair<int64_t, std::string>> recent_errors ABSL_GUARDED_BY(status_mu);
  // The data directory's size, walked at most every 30 s.
  uint64_t store_bytes ABSL_GUARDED_BY(status_mu) = 0;
  std::chrono::steady_clock::time_point store_walked ABSL_GUARDED_BY(status_mu);
  uint64_t StoreBytes();

  // Last: destroyed first, so the coroutine frames the io_context still holds
  // (connections parked at shutdown) find every member above alive.
  gw::asio::io_context ioc;
  gw::tcp::acceptor acceptor;
  std::vector<std::thread> threads;
};

}  // namespace cairn::node
