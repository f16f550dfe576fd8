// The /v1/ endpoints and the verified file streamer every file endpoint uses.
#include <algorithm>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <deque>
#include <sstream>

#include "cairn/hash.h"
#include "cairn/limits.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "http_gateway_impl.h"
#include "http_util.h"
#include "spdlog/spdlog.h"

namespace cairn::node {

using namespace gw;  // NOLINT: the gateway's own insides
using http_util::JsonString;
using http_util::SV;

Answer HttpGateway::Impl::Releases(const std::string& name) {
  if (absl::Status v = ValidateName(name); !v.ok()) return FromStatus(v);
  auto list = ListModel(name);
  if (!list.ok()) return FromStatus(list.status());
  for (const auto& e : list->entries()) {
    if (e.name() != name) continue;  // List matches prefixes
    std::string out = StrCat("{\"name\":", JsonString(name), ",\"releases\":[");
    for (int i = 0; i < e.releases_size(); ++i) {
      const auto& r = e.releases(i);
      out += StrCat(i ? "," : "", "{\"version\":", JsonString(r.version()),
                    ",\"manifest_digest\":", JsonString(r.manifest_digest()),
                    ",\"bytes\":", r.bytes(), ",\"files\":", r.files(),
                    r.yanked()
                        ? StrCat(",\"yanked\":true,\"yank_reason\":", JsonString(r.yank_reason()))
                        : std::string(),
                    "}");
    }
    out += "],\"tags\":[";
    for (int i = 0; i < e.tags_size(); ++i) {
      const auto& t = e.tags(i);
      out += StrCat(i ? "," : "", "{\"tag\":", JsonString(t.tag()),
                    ",\"manifest_digest\":", JsonString(t.manifest_digest()),
                    ",\"version\":", t.version(), ",\"expires_unix\":", t.expires_unix(), "}");
    }
    return Answer{http::status::ok, out + "]}\n", "application/json", {}};
  }
  return Error(http::status::not_found, StrCat("no model ", name, " on this node"));
}

absl::StatusOr<cairn::v1::ListResponse> HttpGateway::Impl::ListModel(const std::string& name) {
  const uint64_t head = repo->ListGeneration();
  {
    absl::MutexLock l(&lists_mu);
    if (lists_feed_head != head) {
      lists.clear();
      lists_feed_head = head;
    }
    if (auto it = lists.find(name); it != lists.end()) return it->second;
  }
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::ListResponse list, repo->List(name));
  absl::MutexLock l(&lists_mu);
  if (lists_feed_head == head) {
    if (lists.size() >= 4096) lists.clear();
    lists[name] = list;
  }
  return list;
}

absl::StatusOr<Release> HttpGateway::Impl::LoadByDigest(const std::string& name,
                                                        const std::string& digest) {
  // Releases never change: a parsed manifest is kept (a few hundred), and
  // only whether the node still serves it is asked each time.
  const std::string key = name + "@" + digest;
  repo->NoteRequested(digest);  // eviction order
  {
    absl::MutexLock l(&manifests_mu);
    auto it = manifests.find(key);
    if (it != manifests.end()) {
      CAIRN_ASSIGN_OR_RETURN(const bool held, repo->HasRelease(digest));
      if (held && repo->WithheldReason(digest).empty()) return Release{digest, it->second, nullptr};
    }
  }
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::ResolveResponse r, repo->Resolve(key));
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::Envelope env,
                         ParseEnvelope(r.manifest_envelope(), kMaxEnvelopeBytes));
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::Manifest m, ParseManifest(env.payload()));
  auto shared = std::make_shared<const cairn::v1::Manifest>(std::move(m));
  absl::MutexLock l(&manifests_mu);
  if (manifests.size() >= kManifestsKept) manifests.clear();
  manifests[key] = shared;
  return Release{r.manifest_digest(), std::move(shared), nullptr};
}

absl::StatusOr<Release> HttpGateway::Impl::LoadRelease(const std::string& name,
                                                       const std::string& ref) {
  CAIRN_RETURN_IF_ERROR(ValidateName(name));
  if (!ref.empty() && ref[0] == '@') return LoadByDigest(name, ref.substr(1));
  // A version first: it never changes, where a tag of the same name could
  // be moved onto another release.
  CAIRN_ASSIGN_OR_RETURN(cairn::v1::ListResponse list, ListModel(name));
  for (const auto& e : list.entries()) {
    if (e.name() != name) continue;
    for (const auto& r : e.releases()) {
      if (r.version() == ref) return LoadByDigest(name, r.manifest_digest());
    }
  }
  auto by_tag = repo->Resolve(name + ":" + ref);
  if (by_tag.ok()) return LoadByDigest(name, by_tag->manifest_digest());
  if (!absl::IsNotFound(by_tag.status()) && !absl::IsInvalidArgument(by_tag.status())) {
    return by_tag.status();
  }
  return absl::NotFoundError(StrCat("no version or tag ", ref, " of ", name, " on this node"));
}

absl::StatusOr<FileToSend> HttpGateway::Impl::PrepareFile(const cairn::v1::FileEntry& f) {
  constexpr uint64_t kKeepListsOfFilesUpTo = 64 << 20;  // lists of about 1,000 chunks
  cairn::v1::ChunkList cl;
  bool cached = false;
  if (f.size() <= kKeepListsOfFilesUpTo) {
    absl::MutexLock l(&chunk_lists_mu);
    if (auto it = chunk_lists.find(f.root()); it != chunk_lists.end()) {
      cl = it->second;
      cached = true;
    }
  }
  if (!cached) {
    CAIRN_ASSIGN_OR_RETURN(std::string list, repo->GetObjectOrStaged(f.root()));
    CAIRN_ASSIGN_OR_RETURN(cl, CheckChunkList(list, f.root(), f.size(), f.path()));
    if (f.size() <= kKeepListsOfFilesUpTo) {
      absl::MutexLock l(&chunk_lists_mu);
      if (chunk_lists.size() >= 4096) chunk_lists.clear();
      chunk_lists[f.root()] = cl;
    }
  }
  FileToSend out;
  out.file = f;
  out.chunks = std::move(cl);
  out.etag = StrCat("\"", f.sha256().substr(f.sha256().find(':') + 1), "\"");
  return out;
}

asio::awaitable<std::optional<Release>> HttpGateway::Impl::FetchOnDemand(
    const std::string& name, const std::string& ref, const std::string& first_path,
    Answer* no_room) {
  if (opts.on_demand == nullptr) co_return std::nullopt;
  std::string r = ref;
  if (r == "main" || r == "HEAD") r = "latest";
  auto fetch = co_await OnFetchPool([&] { return opts.on_demand->Begin(name, r, first_path); });
  if (!fetch.ok()) {
    if (absl::IsResourceExhausted(fetch.status())) {
      *no_room = Error(http::status::insufficient_storage, std::string(fetch.status().message()));
    } else if (!absl::IsNotFound(fetch.status())) {
      NoteError(StrCat("on-demand ", name, " ", ref, ": ", fetch.status().message()));
    }
    co_return std::nullopt;
  }
  co_return Release{(*fetch)->digest,
                    std::make_shared<const cairn::v1::Manifest>((*fetch)->manifest), *fetch};
}

asio::awaitable<bool> HttpGateway::Impl::WaitFor(const std::function<bool()>& present,
                                                 const OnDemand::Fetch& fetch) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    const bool ended = fetch.done;  // read before looking: a last chunk is not missed
    if (present()) co_return true;
    if (ended) co_return false;
    timer.expires_after(std::chrono::milliseconds(10));
    ErrorCode ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<bool> HttpGateway::Impl::WaitForFiles(
    const Release& rel, const std::vector<const cairn::v1::FileEntry*>& files) {
  if (!rel.fetch) co_return true;
  for (const cairn::v1::FileEntry* f : files) {
    if (f == nullptr) continue;
    auto file = co_await PrepareFileOf(rel, *f);
    if (!file.ok()) co_return false;
    for (const auto& c : file->chunks.chunks()) {
      auto d = DigestFromBytes(c.digest());
      if (!d.ok()) co_return false;
      const bool got = co_await WaitFor(
          [&] {
            auto h = repo->chunks_for_reads()->Has(*d);
            return h.ok() && *h;
          },
          *rel.fetch);
      if (!got) co_return false;
    }
  }
  co_return true;
}

asio::awaitable<absl::StatusOr<FileToSend>> HttpGateway::Impl::PrepareFileOf(
    const Release& rel, const cairn::v1::FileEntry& f) {
  if (rel.fetch) {
    co_await WaitFor([&] { return repo->GetObjectOrStaged(f.root()).ok(); }, *rel.fetch);
  }
  absl::StatusOr<FileToSend> out = PrepareFile(f);
  if (out.ok()) {
    out->fetch = rel.fetch;
    out->release_name = rel.manifest->name();
    out->release_digest = rel.digest;
  }
  if (!out.ok() && rel.fetch && rel.fetch->done) {
    absl::Status why = rel.fetch->status();
    if (!why.ok()) out = absl::UnavailableError("on-demand fetch failed: " + why.ToString());
  }
  co_return out;
}

asio::awaitable<bool> HttpGateway::Impl::V1File(Exchange& x, const std::string& name,
                                                const std::string& ref, const std::string& path) {
  absl::StatusOr<Release> rel = LoadRelease(name, ref);
  if (absl::IsNotFound(rel.status()) && opts.on_demand != nullptr) {
    Answer no_room;
    std::optional<Release> fetched = co_await FetchOnDemand(name, ref, path, &no_room);
    if (fetched) rel = std::move(*fetched);
    if (no_room.status == http::status::insufficient_storage) {
      co_return co_await SendAnswer(x, std::move(no_room));
    }
  }
  if (!rel.ok()) {
    Answer answer_ = FromStatus(rel.status());
    co_return co_await SendAnswer(x, std::move(answer_));
  }
  const auto& files = rel->manifest->files();
  auto it = std::lower_bound(files.begin(), files.end(), path,
                             [](const auto& f, const std::string& p) { return f.path() < p; });
  if (it == files.end() || it->path() != path) {
    {
      Answer answer_ = Error(http::status::not_found,
                             StrCat("no file ", path, " in ", name, " ", rel->manifest->version()));
      co_return co_await SendAnswer(x, std::move(answer_));
    }
  }
  auto file = co_await PrepareFileOf(*rel, *it);
  if (!file.ok()) {
    Answer answer_ = FromStatus(file.status());
    co_return co_await SendAnswer(x, std::move(answer_));
  }
  file->headers.emplace_back("X-Cairn-Manifest", rel->digest);
  co_return co_await SendFile(x, std::move(*file));
}

asio::awaitable<bool> HttpGateway::Impl::V1Chunk(Exchange& x, const std::string& name) {
  auto d = ParseDigestName(name);
  if (!d.ok()) {
    Answer answer_ = FromStatus(d.status());
    co_return co_await SendAnswer(x, std::move(answer_));
  }
  auto data = co_await OffLoop([this, d = *d]() -> absl::StatusOr<std::string> {
    std::string b;
    CAIRN_RETURN_IF_ERROR(repo->chunks()->Get(d, &b));
    // Always hashed, whatever [http] verify_reads says: the answer is named
    // by its digest and marked immutable, so a cache in front keeps it.
    if (opts.store_verifies_reads) return b;
    counters.chunks_checked_sha256++;
    if (Sha256Of(b) != d) {
      repo->chunks()->Check(d).IgnoreError();  // drops it
      auto st = absl::DataLossError("chunk " + DigestName(d) + " is damaged on this node");
      NoteDamage("/v1/chunks/" + DigestName(d), st);
      return st;
    }
    return b;
  });
  if (!data.ok()) {
    Answer answer_ = FromStatus(data.status());
    co_return co_await SendAnswer(x, std::move(answer_));
  }
  Answer a{http::status::ok, std::move(*data), "application/octet-stream", {}};
  const std::string etag = StrCat("\"", name, "\"");
  a.headers.emplace_back("ETag", etag);
  a.headers.emplace_back("Cache-Control", "public, max-age=31536000, immutable");
  if (http_util::NoneMatch(SV(x.req[http::field::if_none_match]), etag)) {
    a.status = http::status::not_modified;
    a.body.clear();
  } else {
    counters.bytes_sent += a.body.size();
  }
  co_return co_await SendAnswer(x, std::move(a));
}

asio::awaitable<bool> HttpGateway::Impl::PostChunks(Exchange& x) {
  x.endpoint = "chunks";
  const std::string& body = x.req.body();
  if (body.empty() || body.size() % 32 != 0 || body.size() / 32 > kMaxChunksPerMessage) {
    Answer a = Error(http::status::bad_request, StrCat("the body is 1 to ", kMaxChunksPerMessage,
                                                       " SHA-256 digests of 32 bytes each"));
    co_return co_await SendAnswer(x, std::move(a));
  }
  // Each chunk's length, or 0xffffffff for one this node lacks (or holds
  // damaged, as GetMany says "missing"), 4 bytes big-endian each, then the
  // bytes of those it has, in order (docs/protocol.md).
  auto located = co_await OffLoop([this, &body]() -> absl::StatusOr<FileToSend> {
    ChunkStore* store = repo->chunks_for_reads();
    FileToSend f;
    f.chunks_for_client = true;
    uint64_t total = 0;
    for (size_t at = 0; at < body.size(); at += 32) {
      const std::string raw = body.substr(at, 32);
      CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(raw));
      absl::StatusOr<uint32_t> len = absl::NotFoundError("");
      if (auto e = store->Locate(d); e.ok()) {
        len = e->length;
      } else if (absl::IsUnimplemented(e.status())) {  // not in a file (yet): its bytes say
        std::string b;
        absl::Status st = store->Get(d, &b);
        len = st.ok() ? absl::StatusOr<uint32_t>(static_cast<uint32_t>(b.size())) : st;
      } else {
        len = e.status();
      }
      if (!len.ok() && !absl::IsNotFound(len.status()) && !absl::IsDataLoss(len.status())) {
        return len.status();
      }
      const uint32_t n = len.ok() ? *len : 0xffffffffu;
      for (int shift = 24; shift >= 0; shift -= 8) f.prefix.push_back(char((n >> shift) & 0xff));
      if (!len.ok()) continue;
      auto* c = f.chunks.add_chunks();
      c->set_digest(raw);
      c->set_length(*len);
      total += *len;
    }
    f.file.set_path("requested chunks");
    f.file.set_size(total);
    return f;
  });
  if (!located.ok()) {
    Answer answer_ = FromStatus(located.status());
    co_return co_await SendAnswer(x, std::move(answer_));
  }
  if (located->file.size() == 0) {  // none held: the lengths are the answer
    Answer a{http::status::ok, std::move(located->prefix), "application/octet-stream", {}};
    co_return co_await SendAnswer(x, std::move(a));
  }
  co_return co_await SendFile(x, *std::move(located));
}

}  // namespace cairn::node
