// The Hugging Face Hub download API (model repositories) over the releases a
// node holds: model info, tree, paths-info, resolve and raw, as
// huggingface_hub (Python) and @huggingface/hub (JavaScript) call them. No
// Xet headers or fields: their presence switches clients to a protocol Cairn
// does not serve.
#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>

#include "cairn/hash.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "hf_model.h"
#include "http_gateway_impl.h"
#include "http_util.h"

namespace cairn::node {

using namespace gw;  // NOLINT: the gateway's own insides
using http_util::JsonString;
using http_util::SV;

namespace {

constexpr size_t kMaxPathsPerRequest = 1000;
constexpr size_t kMaxBlobIds = 1 << 16;  // remembered; then forgotten at once

// A Hub error: X-Error-Code and X-Error-Message as the Hub sends them.
Answer HfError(http::status st, std::string_view code, std::string_view message,
               std::string_view commit = "") {
  Answer a = Error(st, message);
  a.headers.emplace_back("X-Error-Code", std::string(code));
  // Header values stay one printable line whatever a client sent.
  std::string m(message.substr(0, 512));
  for (char& c : m) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  a.headers.emplace_back("X-Error-Message", m);
  if (!commit.empty()) a.headers.emplace_back("X-Repo-Commit", std::string(commit));
  return a;
}

// A revision: one decoded segment. A '/' once decoded is allowed (Python
// encodes refs like refs/pr/1 so): no such ref exists here, which the
// lookup then says (RevisionNotFound).
std::optional<std::string> RevisionSegment(std::string_view raw) {
  auto r = http_util::Unescape(raw);
  if (!r) return std::nullopt;
  std::string_view rest = *r;
  for (;;) {  // every part clean: not empty, "." or ".."
    const size_t slash = rest.find('/');
    const std::string_view part = rest.substr(0, slash);
    if (part.empty() || part == "." || part == "..") return std::nullopt;
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  return r;
}

Answer BadPath() {
  return Error(http::status::bad_request,
               "bad path: empty, '.' or '..' segments and bad escapes are refused");
}

std::string LastCommitJson(const Release& rel) {
  return StrCat("{\"id\":", JsonString(hf::CommitId(*rel.manifest, rel.digest)),
                ",\"title\":", JsonString("Release " + rel.manifest->version()),
                ",\"date\":", JsonString(http_util::IsoTime(rel.manifest->created_unix())), "}");
}

// One tree or paths-info entry.
std::string EntryJson(const hf::TreeEntry& e, const std::string& blob_id, const Release& rel,
                      bool expand) {
  std::string out;
  if (e.directory) {
    out = StrCat("{\"type\":\"directory\",\"oid\":", JsonString(e.directory_oid),
                 ",\"size\":0,\"path\":", JsonString(e.path));
  } else {
    const auto& f = *e.file;
    out = StrCat("{\"type\":\"file\",\"oid\":", JsonString(blob_id), ",\"size\":", f.size(),
                 ",\"path\":", JsonString(e.path));
    if (hf::IsLfs(f)) {
      out += StrCat(",\"lfs\":{\"oid\":", JsonString(hf::Sha256Hex(f)), ",\"size\":", f.size(),
                    ",\"pointerSize\":", hf::LfsPointer(f).size(), "}");
    }
  }
  if (expand) out += ",\"lastCommit\":" + LastCommitJson(rel);
  return out + "}";
}

}  // namespace

std::optional<Release> HttpGateway::Impl::HfRelease(const std::string& name, const std::string& rev,
                                                    Answer* error) {
  auto repo_missing = [&] {
    *error = HfError(http::status::not_found, "RepoNotFound",
                     StrCat("Repository not found: ", name, " is not on this node"));
    return std::nullopt;
  };
  if (!ValidateName(name).ok()) return repo_missing();
  auto list = ListModel(name);
  if (!list.ok()) {
    *error = FromStatus(list.status());
    return std::nullopt;
  }
  const cairn::v1::ListEntry* entry = nullptr;
  for (const auto& e : list->entries()) {
    if (e.name() == name) entry = &e;
  }
  if (entry == nullptr || entry->releases().empty()) return repo_missing();
  auto revision_missing = [&] {
    *error = HfError(http::status::not_found, "RevisionNotFound",
                     StrCat("Invalid rev id: ", rev, " (no such tag, version or commit of ", name,
                            " on this node)"));
    return std::nullopt;
  };
  auto load = [&](const std::string& digest) -> std::optional<Release> {
    auto r = LoadByDigest(name, digest);
    if (!r.ok()) {
      *error = FromStatus(r.status());
      return std::nullopt;
    }
    return std::move(*r);
  };
  if (rev == "main" || rev == "HEAD") {
    for (const auto& t : entry->tags()) {
      if (t.tag() != "latest") continue;
      for (const auto& r : entry->releases()) {
        if (r.manifest_digest() != t.manifest_digest() || !r.yanked()) continue;
        // A tag never leads to a yanked release (Repository::Resolve).
        *error = HfError(
            http::status::gone, "RevisionNotFound",
            StrCat(name, ":latest names version ", r.version(), ", which its publisher yanked (",
                   r.yank_reason(), "); ask for it by commit id or version to use it anyway"));
        return std::nullopt;
      }
      return load(t.manifest_digest());
    }
    // No `latest` tag: the newest release not yanked.
    std::optional<Release> newest;
    for (const auto& r : entry->releases()) {
      if (r.yanked()) continue;
      auto got = load(r.manifest_digest());
      if (!got) return std::nullopt;
      if (!newest || got->manifest->created_unix() > newest->manifest->created_unix()) {
        newest = std::move(got);
      }
    }
    return newest;
  }
  if (hf::IsCommitId(rev)) {
    for (const auto& r : entry->releases()) {
      if (hf::DerivedCommitId(r.manifest_digest()) == rev) return load(r.manifest_digest());
    }
    // An id kept from the Hub: the earliest release that claims it, so what
    // a commit id names never changes.
    std::optional<Release> found;
    for (const auto& r : entry->releases()) {
      auto got = load(r.manifest_digest());
      if (!got) return std::nullopt;
      if (hf::CommitId(*got->manifest, got->digest) == rev &&
          (!found || got->manifest->created_unix() < found->manifest->created_unix())) {
        found = std::move(got);
      }
    }
    if (found) return found;
    return revision_missing();
  }
  if (!ValidateVersion(rev).ok()) return revision_missing();
  auto r = LoadRelease(name, rev);
  if (!r.ok()) {
    if (absl::IsNotFound(r.status())) return revision_missing();
    *error = FromStatus(r.status());
    return std::nullopt;
  }
  return std::move(*r);
}

asio::awaitable<std::optional<Release>> HttpGateway::Impl::HfReleaseOrFetch(
    const std::string& name, const std::string& rev, const std::string& first_path, Answer* error) {
  std::optional<Release> rel = HfRelease(name, rev, error);
  if (rel || opts.on_demand == nullptr || error->status != http::status::not_found) co_return rel;
  co_return co_await FetchOnDemand(name, rev, first_path, error);
}

absl::StatusOr<std::string> HttpGateway::Impl::BlobId(const cairn::v1::FileEntry& f) {
  if (hf::IsLfs(f)) return hf::GitBlobId(hf::LfsPointer(f));
  {
    absl::MutexLock l(&blob_ids_mu);
    auto it = blob_ids.find(f.sha256());
    if (it != blob_ids.end()) return it->second;
  }
  CAIRN_ASSIGN_OR_RETURN(FileToSend file, PrepareFile(f));
  hf::GitBlobHasher h(f.size());
  std::string data;
  for (const auto& c : file.chunks.chunks()) {
    CAIRN_ASSIGN_OR_RETURN(Digest d, DigestFromBytes(c.digest()));
    CAIRN_RETURN_IF_ERROR(repo->chunks()->Get(d, &data));
    if (data.size() != c.length() || Sha256Of(data) != d) {
      repo->chunks()->Check(d).IgnoreError();  // drops it
      counters.verification_failures++;
      return absl::DataLossError("chunk " + DigestName(d) + " of " + f.path() +
                                 " is damaged on this node");
    }
    h.Update(data);
  }
  std::string id = h.HexFinal();
  absl::MutexLock l(&blob_ids_mu);
  if (blob_ids.size() >= kMaxBlobIds) blob_ids.clear();
  blob_ids[f.sha256()] = id;
  return id;
}

asio::awaitable<absl::StatusOr<std::vector<std::string>>> HttpGateway::Impl::BlobIds(
    const Release& rel, std::vector<const cairn::v1::FileEntry*> files) {
  if (rel.fetch) {
    std::vector<const cairn::v1::FileEntry*> small;
    for (const auto* f : files) {
      if (f != nullptr && !hf::IsLfs(*f)) small.push_back(f);
    }
    if (!co_await WaitForFiles(rel, small)) {
      co_return absl::UnavailableError("on-demand fetch failed: " + rel.fetch->status().ToString());
    }
  }
  // Known ids (LFS pointers, files read before) without leaving the thread.
  {
    std::vector<std::string> known;
    absl::MutexLock l(&blob_ids_mu);
    for (const auto* f : files) {
      if (f == nullptr) {
        known.emplace_back();
      } else if (hf::IsLfs(*f)) {
        known.push_back(hf::GitBlobId(hf::LfsPointer(*f)));
      } else if (auto it = blob_ids.find(f->sha256()); it != blob_ids.end()) {
        known.push_back(it->second);
      } else {
        break;
      }
    }
    if (known.size() == files.size()) co_return known;
  }
  co_return co_await OffLoop([&]() -> absl::StatusOr<std::vector<std::string>> {
    std::vector<std::string> out;
    for (const auto* f : files) {
      if (f == nullptr) {
        out.emplace_back();
        continue;
      }
      CAIRN_ASSIGN_OR_RETURN(std::string id, BlobId(*f));
      out.push_back(std::move(id));
    }
    return out;
  });
}

Answer HttpGateway::Impl::HfInfo(const std::string& name, const Release& rel, bool blobs) {
  const auto& m = *rel.manifest;
  const std::string when = JsonString(http_util::IsoTime(m.created_unix()));
  std::string out =
      StrCat("{\"_id\":", JsonString(hf::DerivedCommitId(rel.digest).substr(0, 24)),
             ",\"id\":", JsonString(name), ",\"modelId\":", JsonString(name),
             ",\"author\":", JsonString(NamespaceOf(name)),
             ",\"sha\":", JsonString(hf::CommitId(m, rel.digest)), ",\"lastModified\":", when,
             ",\"createdAt\":", when,
             ",\"private\":false,\"gated\":false,\"disabled\":false,\"downloads\":0,\"likes\":0",
             ",\"tags\":[\"cairn\"],\"library_name\":null");
  if (!m.license().empty()) {
    out += StrCat(",\"cardData\":{\"license\":", JsonString(m.license()), "}");
  }
  out += StrCat(",\"cairn\":{\"version\":", JsonString(m.version()),
                ",\"manifest_digest\":", JsonString(rel.digest), "},\"siblings\":[");
  for (int i = 0; i < m.files_size(); ++i) {
    const auto& f = m.files(i);
    out += StrCat(i ? "," : "", "{\"rfilename\":", JsonString(f.path()));
    if (blobs) {
      auto id = BlobId(f);
      if (!id.ok()) return FromStatus(id.status());
      out += StrCat(",\"size\":", f.size(), ",\"blobId\":", JsonString(*id));
      if (hf::IsLfs(f)) {
        out += StrCat(",\"lfs\":{\"sha256\":", JsonString(hf::Sha256Hex(f)), ",\"size\":", f.size(),
                      ",\"pointerSize\":", hf::LfsPointer(f).size(), "}");
      }
    }
    out += "}";
  }
  return Answer{http::status::ok, out + "]}\n", "application/json", {}};
}

asio::awaitable<bool> HttpGateway::Impl::HfApi(Exchange& x,
                                               const std::vector<std::string_view>& s) {
  // /api/models/{ns}/{model}[/revision/{rev} | /tree/{rev}[/{path}] | /paths-info/{rev}]
  x.endpoint = "hf_info";
  if (s.size() < 4) {
    Answer answer_ = Error(http::status::not_found, "no such endpoint");
    co_return co_await SendAnswer(x, std::move(answer_));
  }
  auto ns = http_util::CleanSegment(s[2]), model = http_util::CleanSegment(s[3]);
  if (!ns || !model) {
    Answer answer_ = BadPath();
    co_return co_await SendAnswer(x, std::move(answer_));
  }
  const std::string name = *ns + "/" + *model;
  const bool post = x.req.method() == http::verb::post;
  std::string rev = "main";
  if (s.size() >= 6) {
    auto r = RevisionSegment(s[5]);
    if (!r) {
      Answer answer_ = BadPath();
      co_return co_await SendAnswer(x, std::move(answer_));
    }
    rev = *r;
  }
  const bool info = s.size() == 4 || (s.size() == 6 && s[4] == "revision");
  const bool tree = s.size() >= 6 && s[4] == "tree";
  const bool paths_info = s.size() == 6 && s[4] == "paths-info";
  if (!info && !tree && !paths_info) {
    {
      Answer answer_ = Error(http::status::not_found, "no such endpoint");
      co_return co_await SendAnswer(x, std::move(answer_));
    }
  }
  if (post != paths_info) {
    Answer a = Error(http::status::method_not_allowed,
                     paths_info ? "paths-info takes POST" : "GET or HEAD here");
    a.headers.emplace_back("Allow", paths_info ? "POST" : "GET, HEAD");
    co_return co_await SendAnswer(x, std::move(a));
  }
  if (tree) x.endpoint = "hf_tree";
  if (paths_info) x.endpoint = "hf_paths_info";
  Answer error;
  std::optional<Release> rel = co_await HfReleaseOrFetch(name, rev, "", &error);
  if (!rel) co_return co_await SendAnswer(x, std::move(error));
  if (tree) co_return co_await HfTree(x, s, name, *rel);
  if (paths_info) co_return co_await HfPathsInfo(x, *rel);
  const std::string_view target = x.target;
  const bool blobs = http_util::Truthy(http_util::QueryValue(target, "blobs").value_or(""));
  // (No co_await inside ?: : GCC 12 destroys such a temporary twice.)
  Answer a;
  if (blobs) {
    std::vector<const cairn::v1::FileEntry*> small;
    for (const auto& f : rel->manifest->files()) {
      if (!hf::IsLfs(f)) small.push_back(&f);
    }
    co_await WaitForFiles(*rel, small);  // on demand: BlobId reports what is missing
    a = co_await OffLoop([&] { return HfInfo(name, *rel, true); });
  } else {
    a = HfInfo(name, *rel, false);
  }
  co_return co_await SendAnswer(x, std::move(a));
}

asio::awaitable<bool> HttpGateway::Impl::HfTree(Exchange& x, const std::vector<std::string_view>& s,
                                                const std::string& name, const Release& rel) {
  std::string dir;
  if (s.size() > 6) {
    auto p = http_util::CleanPath(s, 6);
    if (!p) {
      Answer answer_ = BadPath();
      co_return co_await SendAnswer(x, std::move(answer_));
    }
    dir = *p;
  }
  const std::string_view target = x.target;
  const bool recursive = http_util::Truthy(http_util::QueryValue(target, "recursive").value_or(""));
  const bool expand = http_util::Truthy(http_util::QueryValue(target, "expand").value_or(""));
  uint64_t cursor = 0;
  if (auto c = http_util::QueryValue(target, "cursor")) {
    auto [p, ec] = std::from_chars(c->data(), c->data() + c->size(), cursor);
    if (ec != std::errc() || p != c->data() + c->size()) {
      {
        Answer answer_ = Error(http::status::bad_request, "bad cursor");
        co_return co_await SendAnswer(x, std::move(answer_));
      }
    }
  }
  bool found = false;
  std::vector<hf::TreeEntry> entries = hf::Tree(*rel.manifest, dir, recursive, &found);
  const std::string commit = hf::CommitId(*rel.manifest, rel.digest);
  if (!found) {
    {
      Answer answer_ = HfError(http::status::not_found, "EntryNotFound",
                               StrCat("no directory ", dir, " in ", name, " at ", commit), commit);
      co_return co_await SendAnswer(x, std::move(answer_));
    }
  }
  const size_t page = std::max<size_t>(1, opts.tree_page_size);
  const size_t begin = std::min<uint64_t>(cursor, entries.size());
  const size_t end = std::min(entries.size(), begin + page);
  std::vector<const cairn::v1::FileEntry*> files;
  for (size_t i = begin; i < end; ++i) files.push_back(entries[i].file);
  auto ids = co_await BlobIds(rel, files);
  if (!ids.ok()) {
    Answer answer_ = FromStatus(ids.status());
    co_return co_await SendAnswer(x, std::move(answer_));
  }
  std::string out = "[";
  for (size_t i = begin; i < end; ++i) {
    out += StrCat(i > begin ? "," : "", EntryJson(entries[i], (*ids)[i - begin], rel, expand));
  }
  Answer a{http::status::ok, out + "]\n", "application/json", {}};
  if (end < entries.size()) {
    // Absolute: the JavaScript client ignores a relative next link.
    std::string host = http_util::SafeHost(SV(x.req[http::field::host]));
    if (host.empty()) host = address;
    const std::string_view path = target.substr(0, target.find('?'));
    a.headers.emplace_back(
        "Link", StrCat("<", x.https ? "https" : "http", "://", host, path,
                       "?recursive=", recursive ? "true" : "false",
                       "&expand=", expand ? "true" : "false", "&cursor=", end, ">; rel=\"next\""));
  }
  co_return co_await SendAnswer(x, std::move(a));
}

asio::awaitable<bool> HttpGateway::Impl::HfPathsInfo(Exchange& x, const Release& rel) {
  // {"paths": [...], "expand": bool} (JavaScript) or paths=a&paths=b&expand=True (Python).
  std::vector<std::string> paths;
  bool expand = false;
  const std::string& body = x.req.body();
  const std::string_view type = SV(x.req[http::field::content_type]);
  const bool looks_json = !body.empty() && body.find_first_not_of(" \t\r\n") != std::string::npos &&
                          body[body.find_first_not_of(" \t\r\n")] == '{';
  if (type.find("json") != std::string_view::npos || looks_json) {
    auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("paths") || !j["paths"].is_array()) {
      {
        Answer answer_ =
            Error(http::status::bad_request, "want a JSON object with a \"paths\" array");
        co_return co_await SendAnswer(x, std::move(answer_));
      }
    }
    for (const auto& p : j["paths"]) {
      if (!p.is_string()) {
        {
          Answer answer_ = Error(http::status::bad_request, "paths are strings");
          co_return co_await SendAnswer(x, std::move(answer_));
        }
      }
      paths.push_back(p.get<std::string>());
    }
    if (j.contains("expand") && j["expand"].is_boolean()) expand = j["expand"].get<bool>();
  } else {
    bool malformed = false, any = false;
    for (auto& [k, v] : http_util::QueryPairs(body, &malformed)) {
      if (k == "paths") {
        paths.push_back(std::move(v));
        any = true;
      }
      if (k == "expand") expand = http_util::Truthy(v);
    }
    if (malformed || !any) {
      Answer a = Error(http::status::bad_request,
                       "want a form body paths=A&paths=B (percent-encoded) or a JSON body "
                       "{\"paths\": [...]} with Content-Type: application/json");
      co_return co_await SendAnswer(x, std::move(a));
    }
  }
  if (paths.size() > kMaxPathsPerRequest) {
    {
      Answer answer_ = Error(http::status::bad_request,
                             StrCat("at most ", kMaxPathsPerRequest, " paths per request"));
      co_return co_await SendAnswer(x, std::move(answer_));
    }
  }
  std::vector<hf::TreeEntry> found;
  std::vector<const cairn::v1::FileEntry*> files;
  for (const std::string& p : paths) {
    hf::TreeEntry e;
    std::string_view clean = p;
    while (!clean.empty() && clean.back() == '/') clean.remove_suffix(1);
    if (hf::Lookup(*rel.manifest, clean, &e)) {
      files.push_back(e.file);
      found.push_back(std::move(e));
    }
  }
  auto ids = co_await BlobIds(rel, files);
  if (!ids.ok()) {
    Answer answer_ = FromStatus(ids.status());
    co_return co_await SendAnswer(x, std::move(answer_));
  }
  std::string out = "[";
  for (size_t i = 0; i < found.size(); ++i) {
    out += StrCat(i ? "," : "", EntryJson(found[i], (*ids)[i], rel, expand));
  }
  {
    Answer answer_ = Answer{http::status::ok, out + "]\n", "application/json", {}};
    co_return co_await SendAnswer(x, std::move(answer_));
  }
}

asio::awaitable<bool> HttpGateway::Impl::HfFile(Exchange& x,
                                                const std::vector<std::string_view>& s) {
  // /{ns}/{model}/resolve|raw/{rev}/{path}
  const bool raw = s[2] == "raw";
  x.endpoint = raw ? "hf_raw" : "hf_resolve";
  auto ns = http_util::CleanSegment(s[0]), model = http_util::CleanSegment(s[1]);
  auto rev = RevisionSegment(s[3]);
  auto path = http_util::CleanPath(s, 4);
  if (!ns || !model || !rev || !path) {
    Answer answer_ = BadPath();
    co_return co_await SendAnswer(x, std::move(answer_));
  }
  const std::string name = *ns + "/" + *model;
  Answer error;
  std::optional<Release> rel = co_await HfReleaseOrFetch(name, *rev, *path, &error);
  if (!rel) co_return co_await SendAnswer(x, std::move(error));
  const std::string commit = hf::CommitId(*rel->manifest, rel->digest);
  hf::TreeEntry e;
  if (!hf::Lookup(*rel->manifest, *path, &e) || e.directory) {
    {
      Answer answer_ = HfError(http::status::not_found, "EntryNotFound",
                               StrCat(*path, " does not exist in ", name, " at ", commit), commit);
      co_return co_await SendAnswer(x, std::move(answer_));
    }
  }
  const cairn::v1::FileEntry& f = *e.file;
  const bool lfs = hf::IsLfs(f);
  std::string etag;
  if (lfs) {
    etag = hf::Sha256Hex(f);
  } else {
    std::vector<const cairn::v1::FileEntry*> one(1, &f);
    auto ids = co_await BlobIds(*rel, std::move(one));
    if (!ids.ok()) {
      Answer answer_ = FromStatus(ids.status());
      co_return co_await SendAnswer(x, std::move(answer_));
    }
    etag = (*ids)[0];
  }
  Headers h = {{"X-Repo-Commit", commit}, {"X-Cairn-Manifest", rel->digest}};
  if (raw && lfs) {
    // raw serves what git holds: the pointer.
    Answer a{http::status::ok, hf::LfsPointer(f), "text/plain; charset=utf-8", h};
    const std::string ptag = StrCat("\"", hf::GitBlobId(a.body), "\"");
    a.headers.emplace_back("ETag", ptag);
    if (http_util::NoneMatch(SV(x.req[http::field::if_none_match]), ptag)) {
      a.status = http::status::not_modified;
      a.body.clear();
    }
    co_return co_await SendAnswer(x, std::move(a));
  }
  auto file = co_await PrepareFileOf(*rel, f);
  if (!file.ok()) {
    Answer answer_ = FromStatus(file.status());
    co_return co_await SendAnswer(x, std::move(answer_));
  }
  file->etag = StrCat("\"", etag, "\"");
  file->headers = std::move(h);
  if (!raw) {
    file->headers.emplace_back("X-Linked-Etag", file->etag);
    file->headers.emplace_back("X-Linked-Size", std::to_string(f.size()));
  }
  co_return co_await SendFile(x, std::move(*file));
}

}  // namespace cairn::node
