// The client's managed model store and chunk location index (model_store.h).
#include "model_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include "cairn/clock.h"
#include "cairn/limits.h"
#include "cairn/objects.h"
#include "cairn/status.h"
#include "cairn/strings.h"
#include "model_store_keys.h"
#include "safe_fs.h"

namespace cairn::client {

namespace fs = std::filesystem;
using namespace store_keys;  // NOLINT: this file is the store

namespace {

std::string Key2(const std::string& a, const std::string& b) { return a + '\0' + b; }

// Release records: one "key=value" per line (names, versions and digests
// never hold a newline or '='-free ambiguity: the key is before the first '=').
std::string EncodeRelease(const ModelStore::Release& r) {
  return StrCat("name=", r.name, "\nversion=", r.version, "\ndir=", r.dir, "\nbytes=", r.bytes,
                "\nlast_used=", r.last_used, "\npulled=", r.pulled, "\npartial=", r.partial ? 1 : 0,
                "\n");
}
absl::StatusOr<ModelStore::Release> DecodeRelease(const std::string& digest,
                                                  std::string_view text) {
  ModelStore::Release r;
  r.digest = digest;
  for (auto line : Split(text, '\n')) {
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view k = line.substr(0, eq), v = line.substr(eq + 1);
    bool ok = true;
    if (k == "name")
      r.name = v;
    else if (k == "version")
      r.version = v;
    else if (k == "dir")
      r.dir = v;
    else if (k == "bytes")
      ok = ParseInt(v, &r.bytes);
    else if (k == "last_used")
      ok = ParseInt(v, &r.last_used);
    else if (k == "pulled")
      ok = ParseInt(v, &r.pulled);
    else if (k == "partial")
      r.partial = v == "1";
    if (!ok) return absl::DataLossError("store: corrupt record of release " + digest);
  }
  if (r.name.empty() || r.dir.empty() || r.dir[0] != '/') {
    return absl::DataLossError("store: corrupt record of release " + digest);
  }
  return r;
}

}  // namespace

std::string DefaultStoreDir() {
  if (const char* x = std::getenv("XDG_DATA_HOME"); x && *x == '/') {
    return std::string(x) + "/cairn";
  }
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.local/share/cairn";
}

std::string ReleaseDirName(const std::string& version, const std::string& digest) {
  std::string hex = digest.substr(digest.find(':') + 1, 12);
  return version + "-" + hex;
}

uint64_t DiskUsage(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return 0;
  uint64_t total = static_cast<uint64_t>(st.st_blocks) * 512;
  if (!S_ISDIR(st.st_mode)) return total;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (::lstat(it->path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

ModelStore::ModelStore(std::string dir, std::unique_ptr<MetaStore> meta)
    : dir_(std::move(dir)), meta_(std::move(meta)) {}
ModelStore::~ModelStore() = default;

absl::StatusOr<std::unique_ptr<ModelStore>> ModelStore::Open(
    const std::string& dir_in, int wait_seconds,
    const std::function<void(const std::string&)>& log) {
  std::error_code ec;
  std::string dir = fs::absolute(dir_in, ec).lexically_normal().string();
  if (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  fs::create_directories(dir + "/models", ec);
  if (ec) return absl::InvalidArgumentError("cannot create the store " + dir + ": " + ec.message());
  auto meta = OpenRocksMetaStore(dir + "/index", true, /*small=*/true);
  for (int waited = 0; absl::IsFailedPrecondition(meta.status()); ++waited) {
    if (waited == 0 && log)
      log("waiting for the store " + dir + ", in use by another cairn process...");
    if (wait_seconds >= 0 && waited >= wait_seconds * 4) {
      return absl::FailedPreconditionError("store " + dir +
                                           " is still in use by another cairn process; pass "
                                           "--store DIR to use another");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    meta = OpenRocksMetaStore(dir + "/index", true, /*small=*/true);
  }
  if (absl::IsDataLoss(meta.status())) {
    return absl::DataLossError(StrCat("the store's index ", dir, "/index is damaged (",
                                      meta.status().message(),
                                      "); move it away: pulling a release "
                                      "again re-indexes its files"));
  }
  if (!meta.ok()) return Annotate(meta.status(), "store " + dir);
  return std::unique_ptr<ModelStore>(new ModelStore(dir, std::move(*meta)));
}

std::string ModelStore::ReleaseDir(const std::string& name, const std::string& version,
                                   const std::string& digest) const {
  return StrCat(dir_, "/models/", name, "/releases/", ReleaseDirName(version, digest));
}

std::string ModelStore::TagPath(const std::string& name, const std::string& tag) const {
  return StrCat(dir_, "/models/", name, "/", tag);
}

// ---- chunks ----

absl::StatusOr<bool> ModelStore::Has(const Digest& d) {
  CAIRN_ASSIGN_OR_RETURN(std::vector<Location> locs, Find(d));
  return !locs.empty();
}

absl::StatusOr<std::vector<ModelStore::Location>> ModelStore::Find(const Digest& d) {
  std::vector<std::pair<std::string, std::string>> entries;  // file id, value
  CAIRN_RETURN_IF_ERROR(meta_->Scan(Table::kLocal, DigestBytes(d), [&](auto k, auto v) {
    if (k.size() == 40 && v.size() == 12) entries.emplace_back(k.substr(32), v);
    return entries.size() < 16;
  }));
  std::vector<Location> out;
  for (const auto& [id, v] : entries) {
    CAIRN_ASSIGN_OR_RETURN(KnownFile f, FileOf(id));
    // A file deleted since (a plain tree removed by hand), or one whose
    // record went with its release, is forgotten now. (Whether a file
    // exists is looked at once per process; a read verifies anyway.)
    if (!f.exists) {
      CAIRN_RETURN_IF_ERROR(DropEntry(LocalKey(d, id)));
      continue;
    }
    out.push_back(
        {f.path, id, f.fingerprint, GetBE(v, 0, 8), static_cast<uint32_t>(GetBE(v, 8, 4))});
  }
  return out;
}

absl::Status ModelStore::DropEntry(const std::string& key) {
  return meta_->Commit({WriteOp{Table::kLocal, key, std::nullopt}}, /*sync=*/false);
}

absl::Status ModelStore::Read(const Digest& d, std::string* out) {
  CAIRN_ASSIGN_OR_RETURN(std::vector<Location> locs, Find(d));
  for (const auto& loc : locs) {
    Fd fd = OpenRegular(loc.path);
    if (loc.length > kMaxChunkSize) continue;  // (a damaged index)
    out->resize(loc.length);
    if (fd.fd >= 0 && PreadAll(fd.fd, out->data(), loc.length, loc.offset).ok() &&
        Sha256Of(*out) == d) {
      return absl::OkStatus();
    }
    // Changed or gone since it was written: only a refetch is lost.
    CAIRN_RETURN_IF_ERROR(DropEntry(LocalKey(d, loc.file_id)));
    CAIRN_RETURN_IF_ERROR(Distrust(loc.file_id));
  }
  out->clear();
  return absl::NotFoundError("chunk " + DigestName(d) + " is in no local file");
}

absl::Status ModelStore::AddLocations(const std::string& path, const std::vector<ChunkAt>& chunks) {
  if (chunks.empty()) return absl::OkStatus();
  std::vector<WriteOp> ops;
  ops.reserve(chunks.size() + 2);
  CAIRN_ASSIGN_OR_RETURN(std::string id, IdOf(path, /*create=*/true, &ops));
  for (const auto& c : chunks) {
    std::string v;
    PutBE(&v, c.offset, 8);
    PutBE(&v, c.length, 4);
    ops.push_back(WriteOp{Table::kLocal, LocalKey(c.digest, id), std::move(v)});
  }
  absl::Status st = meta_->Commit(ops, /*sync=*/false);
  if (!st.ok()) ids_.erase(path);  // a new id may not have been written
  return st;
}

absl::Status ModelStore::DropLocations(const std::string& path,
                                       const std::vector<Digest>& digests) {
  CAIRN_ASSIGN_OR_RETURN(std::string id, IdOf(path, /*create=*/false));
  if (id.empty()) return absl::OkStatus();
  std::vector<WriteOp> ops;
  for (const auto& d : digests)
    ops.push_back(WriteOp{Table::kLocal, LocalKey(d, id), std::nullopt});
  if (ops.empty()) return absl::OkStatus();
  return meta_->Commit(ops, /*sync=*/false);
}

absl::Status ModelStore::Scrub(uint64_t* dropped, uint64_t* checked) {
  *dropped = *checked = 0;
  std::vector<std::pair<std::string, std::string>> entries;
  CAIRN_RETURN_IF_ERROR(meta_->Scan(Table::kLocal, "", [&](auto k, auto v) {
    entries.emplace_back(k, v);
    return true;
  }));
  std::string path_of_id, last_id, buf;
  Fd fd;
  for (const auto& [k, v] : entries) {
    ++*checked;
    bool good = false;
    if (k.size() == 40 && v.size() == 12) {
      std::string id = k.substr(32);
      if (id != last_id) {
        last_id = id;
        auto p = meta_->Get(Table::kState, FileKey(id));
        fd = p.ok() ? OpenRegular(*p) : Fd();
      }
      buf.resize(std::min<uint64_t>(GetBE(v, 8, 4), kMaxChunkSize + 1));
      good = fd.fd >= 0 && PreadAll(fd.fd, buf.data(), buf.size(), GetBE(v, 0, 8)).ok() &&
             DigestBytes(Sha256Of(buf)) == std::string_view(k).substr(0, 32);
    }
    if (!good) {
      CAIRN_RETURN_IF_ERROR(DropEntry(k));
      if (k.size() == 40) CAIRN_RETURN_IF_ERROR(Distrust(k.substr(32)));
      ++*dropped;
    }
  }
  // And the records of files gone (temporary files of failed pulls, files
  // removed by hand): names, fingerprints, roots.
  return SweepRecords(dropped);
}

// ---- metadata ----

absl::Status ModelStore::PutObject(const std::string& digest_name, const std::string& bytes) {
  return meta_->Commit({WriteOp{Table::kObjects, digest_name, bytes}}, false);
}
absl::StatusOr<std::string> ModelStore::GetObject(const std::string& digest_name) {
  return meta_->Get(Table::kObjects, digest_name);
}
absl::Status ModelStore::PutEnvelope(const std::string& digest_name, const std::string& envelope) {
  return meta_->Commit({WriteOp{Table::kEnvelopes, digest_name, envelope}}, false);
}
absl::StatusOr<std::string> ModelStore::GetEnvelope(const std::string& digest_name) {
  return meta_->Get(Table::kEnvelopes, digest_name);
}
absl::Status ModelStore::PutTag(const std::string& name, const std::string& tag,
                                const std::string& envelope) {
  return meta_->Commit({WriteOp{Table::kTags, Key2(name, tag), envelope}}, false);
}
absl::StatusOr<std::string> ModelStore::GetTag(const std::string& name, const std::string& tag) {
  return meta_->Get(Table::kTags, Key2(name, tag));
}

// ---- releases ----

absl::StatusOr<cairn::v1::ResolveResponse> ModelStore::Resolve(const std::string& ref_text) {
  CAIRN_ASSIGN_OR_RETURN(Ref ref, ParseRef(ref_text));
  cairn::v1::ResolveResponse resp;
  std::string digest = ref.digest;
  auto missing = [&] {
    return absl::NotFoundError(ref.ToString() + " is not in the store " + dir_);
  };
  if (!ref.tag.empty()) {
    auto tag = GetTag(ref.name, ref.tag);
    if (absl::IsNotFound(tag.status())) return missing();
    CAIRN_RETURN_IF_ERROR(tag.status());
    cairn::v1::Envelope e;
    cairn::v1::TagRecord rec;
    if (!e.ParseFromString(*tag) || !rec.ParseFromString(e.payload())) {
      return absl::DataLossError("store: the tag record of " + ref.ToString() + " is corrupt");
    }
    digest = rec.manifest_digest();
    resp.set_tag_envelope(*tag);
  } else if (!ref.version.empty()) {
    CAIRN_ASSIGN_OR_RETURN(auto all, Releases());
    for (const auto& r : all) {
      if (r.name == ref.name && r.version == ref.version) digest = r.digest;
    }
    if (digest.empty()) return missing();
  }
  auto env = GetEnvelope(digest);
  if (absl::IsNotFound(env.status())) return missing();
  CAIRN_RETURN_IF_ERROR(env.status());
  resp.set_manifest_envelope(*env);
  resp.set_manifest_digest(digest);
  return resp;
}

absl::Status ModelStore::PutRelease(const Release& r) {
  return meta_->Commit({WriteOp{Table::kReleases, r.digest, EncodeRelease(r)}}, false);
}

absl::StatusOr<ModelStore::Release> ModelStore::GetRelease(const std::string& digest) {
  CAIRN_ASSIGN_OR_RETURN(std::string v, meta_->Get(Table::kReleases, digest));
  return DecodeRelease(digest, v);
}

absl::StatusOr<std::vector<ModelStore::Release>> ModelStore::Releases() {
  std::vector<Release> out;
  absl::Status bad;
  CAIRN_RETURN_IF_ERROR(meta_->Scan(Table::kReleases, "", [&](auto k, auto v) {
    auto r = DecodeRelease(std::string(k), v);
    if (!r.ok()) {
      bad = r.status();
      return false;
    }
    out.push_back(std::move(*r));
    return true;
  }));
  CAIRN_RETURN_IF_ERROR(bad);
  std::sort(out.begin(), out.end(), [](const Release& a, const Release& b) {
    return std::tie(a.name, a.pulled, a.version) < std::tie(b.name, b.pulled, b.version);
  });
  return out;
}

absl::Status ModelStore::LinkTag(const std::string& name, const std::string& tag,
                                 const std::string& release_dir) {
  if (tag == "releases") return absl::OkStatus();  // the folder of the releases themselves
  std::string link = TagPath(name, tag);
  std::string target = "releases/" + fs::path(release_dir).filename().string();
  std::string tmp = StrCat(link, ".cairn-link-", ::getpid());
  ::unlink(tmp.c_str());
  if (::symlink(target.c_str(), tmp.c_str()) != 0) return ErrnoStatus(errno, "cannot link " + link);
  if (::rename(tmp.c_str(), link.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, "cannot link " + link + " (is it a directory?)");
  }
  return absl::OkStatus();
}

std::vector<std::string> ModelStore::TagsOf(const std::string& name,
                                            const std::string& release_dir) const {
  std::vector<std::string> tags;
  std::string model_dir = StrCat(dir_, "/models/", name);
  std::string want = "releases/" + fs::path(release_dir).filename().string();
  std::error_code ec;
  for (auto it = fs::directory_iterator(model_dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (!it->is_symlink(ec)) continue;
    auto target = fs::read_symlink(it->path(), ec);
    if (!ec && target.string() == want) tags.push_back(it->path().filename().string());
  }
  std::sort(tags.begin(), tags.end());
  return tags;
}

absl::Status ModelStore::ForgetRelease(const std::string& digest) {
  CAIRN_ASSIGN_OR_RETURN(Release r, GetRelease(digest));
  auto env = GetEnvelope(digest);
  cairn::v1::Envelope e;
  cairn::v1::Manifest m;
  if (!env.ok() || !e.ParseFromString(*env) || !m.ParseFromString(e.payload())) {
    return absl::OkStatus();
  }
  for (const auto& f : m.files()) CAIRN_RETURN_IF_ERROR(ForgetPath(r.dir + "/" + f.path()));
  return absl::OkStatus();
}

absl::Status ModelStore::Remove(const std::string& digest) {
  CAIRN_ASSIGN_OR_RETURN(Release r, GetRelease(digest));
  // The locations first: a crash after this leaves files no entry names.
  auto env = GetEnvelope(digest);
  if (env.ok()) {
    cairn::v1::Envelope e;
    cairn::v1::Manifest m;
    if (e.ParseFromString(*env) && m.ParseFromString(e.payload())) {
      for (const auto& f : m.files()) {
        auto cl_bytes = GetObject(f.root());
        cairn::v1::ChunkList cl;
        if (!cl_bytes.ok() || !cl.ParseFromString(*cl_bytes)) continue;
        std::vector<Digest> ds;
        for (const auto& c : cl.chunks()) {
          if (c.digest().size() != 32) continue;
          Digest d;
          std::memcpy(d.data(), c.digest().data(), 32);
          ds.push_back(d);
        }
        const std::string path = r.dir + "/" + f.path();
        CAIRN_RETURN_IF_ERROR(DropLocations(path, ds));
        CAIRN_RETURN_IF_ERROR(ForgetPath(path));
      }
    }
  }
  for (const auto& tag : TagsOf(r.name, r.dir)) ::unlink(TagPath(r.name, tag).c_str());
  std::error_code ec;
  fs::remove_all(r.dir, ec);
  if (ec) return absl::InternalError("cannot remove " + r.dir + ": " + ec.message());
  return meta_->Commit({WriteOp{Table::kReleases, digest, std::nullopt}}, false);
}

absl::StatusOr<uint64_t> ModelStore::SizeOnDisk() { return DiskUsage(dir_); }

absl::StatusOr<std::vector<ModelStore::Release>> ModelStore::Evict(uint64_t max_bytes,
                                                                   const std::string& keep) {
  std::vector<Release> removed;
  CAIRN_ASSIGN_OR_RETURN(uint64_t size, SizeOnDisk());
  if (size <= max_bytes) return removed;
  CAIRN_ASSIGN_OR_RETURN(std::vector<Release> all, Releases());
  std::sort(all.begin(), all.end(),
            [](const Release& a, const Release& b) { return a.last_used < b.last_used; });
  for (const auto& r : all) {
    if (size <= max_bytes) break;
    if (r.digest == keep) continue;
    uint64_t used = DiskUsage(r.dir);
    CAIRN_RETURN_IF_ERROR(Remove(r.digest));
    size -= std::min(size, used);
    removed.push_back(r);
  }
  return removed;
}

}  // namespace cairn::client
