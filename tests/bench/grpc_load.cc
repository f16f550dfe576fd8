// A load generator for the node's gRPC read path (issue 15): keeps
// --concurrency calls in flight over --channels connections for --seconds
// and prints calls/s and latency percentiles. Python callers saturate the
// CPU long before the node does; this one costs little beside the node.
//
//   grpc_load --target HOST:PORT --ref NAME[:TAG] [--method resolve|getmany]
//             [--concurrency 64] [--channels 4] [--seconds 10] [--batch 1]
//
// resolve: Registry.Resolve of --ref, one unary call after another per slot.
// getmany: one Chunks.GetMany stream per slot, each request asking for
// --batch chunks of --ref's first file (round robin), the next request sent
// when the last answer arrived; a "call" is one request and its answers.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/synchronization/blocking_counter.h"
#include "cairn/objects.h"
#include "cairn/v1/objects.pb.h"
#include "cairn/v1/service.grpc.pb.h"

namespace {

using Clock = std::chrono::steady_clock;
using cairn::v1::Chunks;
using cairn::v1::Registry;

struct Options {
  std::string target, ref, method = "resolve";
  int concurrency = 64, channels = 4, seconds = 10, batch = 1;
};

// Latencies, in microseconds, from every slot.
struct Results {
  std::mutex mu;
  std::vector<uint32_t> micros;
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> bytes{0};  // chunk bytes received (getmany)
  void Add(std::vector<uint32_t>& mine) {
    std::lock_guard<std::mutex> l(mu);
    micros.insert(micros.end(), mine.begin(), mine.end());
  }
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "grpc_load: %s\n", what.c_str());
  std::exit(1);
}

// One Resolve after another until `end`, from the callback API's threads.
class ResolveSlot {
 public:
  ResolveSlot(Registry::Stub* stub, const Options& o, Clock::time_point end, Results* r,
              absl::BlockingCounter* running)
      : stub_(stub), end_(end), results_(r), running_(running) {
    req_.set_ref(o.ref);
  }
  void Start() {
    ctx_ = std::make_unique<grpc::ClientContext>();
    resp_.Clear();
    t0_ = Clock::now();
    stub_->async()->Resolve(ctx_.get(), &req_, &resp_, [this](grpc::Status s) { Done(s); });
  }

 private:
  void Done(const grpc::Status& s) {
    const auto now = Clock::now();
    if (s.ok()) {
      mine_.push_back(static_cast<uint32_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(now - t0_).count()));
    } else if (results_->errors++ == 0) {
      std::fprintf(stderr, "grpc_load: first error: %s\n", s.error_message().c_str());
    }
    if (now < end_) return Start();
    results_->Add(mine_);
    running_->DecrementCount();
  }
  Registry::Stub* stub_;
  Clock::time_point end_;
  Results* results_;
  absl::BlockingCounter* running_;
  cairn::v1::ResolveRequest req_;
  cairn::v1::ResolveResponse resp_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  Clock::time_point t0_;
  std::vector<uint32_t> mine_;
};

// One GetMany stream: a request of `batch` digests, its answers, the next.
class GetManySlot final
    : public grpc::ClientBidiReactor<cairn::v1::GetChunksRequest, cairn::v1::GetChunksResponse> {
 public:
  GetManySlot(Chunks::Stub* stub, const Options& o, const std::vector<std::string>* digests,
              size_t first, Clock::time_point end, Results* r, absl::BlockingCounter* running)
      : batch_(o.batch),
        digests_(digests),
        next_(first),
        end_(end),
        results_(r),
        running_(running) {
    stub->async()->GetMany(&ctx_, this);
    StartCall();
    Send();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    StartRead(&resp_);
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    for (const auto& c : resp_.chunks()) {
      if (c.missing() || c.data().empty()) results_->errors++;
      results_->bytes += c.data().size();
    }
    pending_ -= resp_.chunks_size();
    if (pending_ > 0) return StartRead(&resp_);
    const auto now = Clock::now();
    mine_.push_back(static_cast<uint32_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(now - t0_).count()));
    if (now < end_) return Send();
    StartWritesDone();
  }
  void OnDone(const grpc::Status& s) override {
    if (!s.ok() && results_->errors++ == 0) {
      std::fprintf(stderr, "grpc_load: first error: %s\n", s.error_message().c_str());
    }
    results_->Add(mine_);
    running_->DecrementCount();
  }

 private:
  void Send() {
    req_.Clear();
    for (int i = 0; i < batch_; ++i) {
      req_.add_digests((*digests_)[next_++ % digests_->size()]);
    }
    pending_ = batch_;
    t0_ = Clock::now();
    StartWrite(&req_);
  }
  grpc::ClientContext ctx_;
  const int batch_;
  const std::vector<std::string>* digests_;
  size_t next_;
  Clock::time_point end_;
  Results* results_;
  absl::BlockingCounter* running_;
  cairn::v1::GetChunksRequest req_;
  cairn::v1::GetChunksResponse resp_;
  int pending_ = 0;
  Clock::time_point t0_;
  std::vector<uint32_t> mine_;
};

// The chunk digests of --ref's largest file, through the node itself.
std::vector<std::string> ChunkDigests(const std::shared_ptr<grpc::Channel>& ch,
                                      const std::string& ref) {
  auto reg = Registry::NewStub(ch);
  grpc::ClientContext c1;
  cairn::v1::ResolveRequest rq;
  rq.set_ref(ref);
  cairn::v1::ResolveResponse rs;
  if (auto s = reg->Resolve(&c1, rq, &rs); !s.ok())
    Die("resolve " + ref + ": " + s.error_message());
  auto env = cairn::ParseEnvelope(rs.manifest_envelope(), 64 << 20);
  if (!env.ok()) Die("manifest envelope: " + std::string(env.status().message()));
  auto m = cairn::ParseManifest(env->payload());
  if (!m.ok() || m->files_size() == 0) Die("manifest: no files");
  auto file = std::max_element(m->files().begin(), m->files().end(),
                               [](const auto& a, const auto& b) { return a.size() < b.size(); });
  grpc::ClientContext c2;
  cairn::v1::GetObjectRequest oq;
  oq.set_digest(file->root());
  cairn::v1::GetObjectResponse os;
  if (auto s = reg->GetObject(&c2, oq, &os); !s.ok()) Die("chunk list: " + s.error_message());
  auto list = cairn::ParseChunkList(os.data());
  if (!list.ok()) Die("chunk list: " + std::string(list.status().message()));
  std::vector<std::string> out;
  for (const auto& c : list->chunks()) out.push_back(c.digest());
  if (out.empty()) Die("the file has no chunks");
  return out;
}

Options Parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    auto number = [&]() {
      const std::string v = value();
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (*end != '\0' || n < 1 || n > 100000) Die(a + ": not a number from 1 to 100000: " + v);
      return static_cast<int>(n);
    };
    if (a == "--target")
      o.target = value();
    else if (a == "--ref")
      o.ref = value();
    else if (a == "--method")
      o.method = value();
    else if (a == "--concurrency")
      o.concurrency = number();
    else if (a == "--channels")
      o.channels = number();
    else if (a == "--seconds")
      o.seconds = number();
    else if (a == "--batch")
      o.batch = number();
    else
      Die("unknown argument " + a);
  }
  if (o.target.empty() || o.ref.empty()) Die("--target and --ref are required");
  if (o.method != "resolve" && o.method != "getmany") Die("--method is resolve or getmany");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = Parse(argc, argv);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < o.channels; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("grpc.channel_id", i);  // distinct channels, not one shared subchannel
    args.SetMaxReceiveMessageSize(64 << 20);
    channels.push_back(
        grpc::CreateCustomChannel(o.target, grpc::InsecureChannelCredentials(), args));
  }
  std::vector<std::string> digests;
  if (o.method == "getmany") digests = ChunkDigests(channels[0], o.ref);
  std::vector<std::unique_ptr<Registry::Stub>> regs;
  std::vector<std::unique_ptr<Chunks::Stub>> chunks;
  for (auto& ch : channels) {
    regs.push_back(Registry::NewStub(ch));
    chunks.push_back(Chunks::NewStub(ch));
  }
  Results results;
  absl::BlockingCounter running(o.concurrency);
  const auto start = Clock::now();
  const auto end = start + std::chrono::seconds(o.seconds);
  std::vector<std::unique_ptr<ResolveSlot>> resolves;
  std::vector<std::unique_ptr<GetManySlot>> streams;
  for (int i = 0; i < o.concurrency; ++i) {
    if (o.method == "resolve") {
      resolves.push_back(
          std::make_unique<ResolveSlot>(regs[i % o.channels].get(), o, end, &results, &running));
      resolves.back()->Start();
    } else {
      streams.push_back(std::make_unique<GetManySlot>(chunks[i % o.channels].get(), o, &digests,
                                                      i * 7, end, &results, &running));
    }
  }
  running.Wait();  // every slot has finished its last call
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  auto& m = results.micros;
  std::sort(m.begin(), m.end());
  auto pct = [&](double p) {
    return m.empty() ? 0.0 : m[std::min(m.size() - 1, static_cast<size_t>(p * m.size()))] / 1000.0;
  };
  std::printf(
      "%s %s: %zu calls in %.1f s, %.0f calls/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms, "
      "%llu errors (concurrency %d, channels %d%s)%s\n",
      o.method.c_str(), o.ref.c_str(), m.size(), secs, m.size() / secs, pct(0.5), pct(0.99),
      m.empty() ? 0.0 : m.back() / 1000.0, static_cast<unsigned long long>(results.errors.load()),
      o.concurrency, o.channels,
      o.method == "getmany" ? (", " + std::to_string(o.batch) + " chunks a call").c_str() : "",
      o.method == "getmany"
          ? (", " + std::to_string(results.bytes.load() / secs / 1e9).substr(0, 4) + " GB/s")
                .c_str()
          : "");
  return results.errors.load() == 0 ? 0 : 1;
}
