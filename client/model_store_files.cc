// The client's store: which file an index entry names, and what is known of
// that file (model_store.h: the "path", "file", "stat" and "root" records).
#include <openssl/rand.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <string>
#include <vector>

#include "cairn/status.h"
#include "cairn/strings.h"
#include "model_store.h"
#include "model_store_keys.h"

namespace cairn::client {

using namespace store_keys;  // NOLINT: this file is the store

absl::StatusOr<std::string> ModelStore::IdOf(const std::string& path, bool create,
                                             std::vector<WriteOp>* ops) {
  if (auto it = ids_.find(path); it != ids_.end()) return it->second;
  auto id = meta_->Get(Table::kState, PathKey(path));
  if (id.ok() && id->size() == 8) return ids_[path] = *id;
  if (!id.ok() && !absl::IsNotFound(id.status())) return id.status();
  std::string legacy = LegacyId(path);
  auto named = meta_->Get(Table::kState, FileKey(legacy));
  if (named.ok() && *named == path) return ids_[path] = legacy;
  if (!named.ok() && !absl::IsNotFound(named.status())) return named.status();
  if (!create) return std::string();
  // A new id no record uses (64 random bits; a clash is checked anyway).
  std::string fresh(8, '\0');
  for (int tries = 0;; ++tries) {
    if (tries == 8) return absl::InternalError("cannot allocate a file id in the store's index");
    if (RAND_bytes(reinterpret_cast<unsigned char*>(fresh.data()), 8) != 1) {
      return absl::InternalError("no random bytes for a file id");
    }
    auto used = meta_->Get(Table::kState, FileKey(fresh));
    if (absl::IsNotFound(used.status())) break;
    if (!used.ok()) return used.status();
  }
  ops->push_back(WriteOp{Table::kState, PathKey(path), fresh});
  ops->push_back(WriteOp{Table::kState, FileKey(fresh), path});
  files_[fresh] = {path, true, "", ""};
  return ids_[path] = fresh;
}

absl::StatusOr<ModelStore::KnownFile> ModelStore::FileOf(const std::string& id) {
  if (auto it = files_.find(id); it != files_.end()) return it->second;
  KnownFile f;
  auto path = meta_->Get(Table::kState, FileKey(id));
  if (!path.ok() && !absl::IsNotFound(path.status())) return path.status();
  if (path.ok()) {
    f.path = *path;
    struct stat st;
    f.exists = ::stat(f.path.c_str(), &st) == 0 || errno != ENOENT;
    auto rec = meta_->Get(Table::kState, StatKey(id));
    if (rec.ok() && rec->size() >= kFingerprintSize) {
      f.fingerprint = rec->substr(0, kFingerprintSize);
      f.root = rec->substr(kFingerprintSize);
    }
  }
  return files_[id] = f;
}

std::string ModelStore::Fingerprint(const struct stat& st) {
  std::string fp;
  PutBE(&fp, static_cast<uint64_t>(st.st_dev), 8);
  PutBE(&fp, static_cast<uint64_t>(st.st_ino), 8);
  PutBE(&fp, static_cast<uint64_t>(st.st_size), 8);
  PutBE(&fp, static_cast<uint64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec, 8);
  PutBE(&fp, static_cast<uint64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec, 8);
  return fp;
}

bool ModelStore::FingerprintsHold(int fd) {
  struct statfs fs;
  if (::fstatfs(fd, &fs) != 0) return false;
  switch (static_cast<uint64_t>(fs.f_type)) {
    case 0xEF53:      // ext2/3/4
    case 0x58465342:  // XFS
    case 0x9123683E:  // Btrfs
    case 0xF2F52010:  // F2FS
    case 0x01021994:  // tmpfs
    case 0x2FC12FC1:  // ZFS
      return true;
    default:  // NFS, FUSE, SMB, ...: times are what a server says
      return false;
  }
}

absl::Status ModelStore::ForgetPath(const std::string& path) {
  CAIRN_ASSIGN_OR_RETURN(std::string id, IdOf(path, /*create=*/false));
  ids_.erase(path);
  if (id.empty()) return absl::OkStatus();
  files_.erase(id);
  // The id's chunk entries and root records lose their file: dropped as met.
  return meta_->Commit({WriteOp{Table::kState, PathKey(path), std::nullopt},
                        WriteOp{Table::kState, FileKey(id), std::nullopt},
                        WriteOp{Table::kState, StatKey(id), std::nullopt}},
                       false);
}

absl::Status ModelStore::NoteKnownGood(const std::string& path, const struct stat& st,
                                       const std::string& root) {
  CAIRN_ASSIGN_OR_RETURN(std::string id, IdOf(path, /*create=*/false));
  if (id.empty()) return absl::OkStatus();
  files_.erase(id);
  std::vector<WriteOp> ops{WriteOp{Table::kState, StatKey(id), Fingerprint(st) + root}};
  if (!root.empty()) ops.push_back(WriteOp{Table::kState, RootKey(root) + id, ""});
  return meta_->Commit(ops, false);
}

absl::StatusOr<ModelStore::KnownFile> ModelStore::Known(const std::string& path) {
  CAIRN_ASSIGN_OR_RETURN(std::string id, IdOf(path, /*create=*/false));
  if (id.empty()) return KnownFile{};
  CAIRN_ASSIGN_OR_RETURN(KnownFile f, FileOf(id));
  return f.path == path ? f : KnownFile{};
}

absl::StatusOr<std::vector<ModelStore::Location>> ModelStore::FilesWithRoot(
    const std::string& root) {
  std::vector<std::string> ids;
  const std::string prefix = RootKey(root);
  CAIRN_RETURN_IF_ERROR(meta_->Scan(Table::kState, prefix, [&](auto k, auto) {
    if (k.size() == prefix.size() + 8) ids.emplace_back(k.substr(prefix.size()));
    return ids.size() < 16;
  }));
  std::vector<Location> out;
  for (const auto& id : ids) {
    CAIRN_ASSIGN_OR_RETURN(KnownFile f, FileOf(id));
    if (!f.exists || f.root != root) {  // gone, or since known as another file
      CAIRN_RETURN_IF_ERROR(
          meta_->Commit({WriteOp{Table::kState, prefix + id, std::nullopt}}, false));
      continue;
    }
    if (!f.fingerprint.empty()) out.push_back({f.path, id, f.fingerprint, 0, 0});
  }
  return out;
}

absl::StatusOr<std::string> ModelStore::FingerprintOf(const std::string& id) {
  CAIRN_ASSIGN_OR_RETURN(KnownFile f, FileOf(id));
  return f.fingerprint;
}

absl::Status ModelStore::Distrust(const std::string& id) {
  if (auto it = files_.find(id); it != files_.end()) {
    it->second.fingerprint.clear();
    it->second.root.clear();
  }
  return meta_->Commit({WriteOp{Table::kState, StatKey(id), std::nullopt}}, false);
}

absl::Status ModelStore::ForgetLocation(const Location& loc, const Digest& d) {
  CAIRN_RETURN_IF_ERROR(
      meta_->Commit({WriteOp{Table::kLocal, LocalKey(d, loc.file_id), std::nullopt}}, false));
  return Distrust(loc.file_id);
}

absl::Status ModelStore::RenameFile(const std::string& from, const std::string& to,
                                    const struct stat* known_good, const std::string& root) {
  CAIRN_ASSIGN_OR_RETURN(std::string id, IdOf(from, /*create=*/false));
  CAIRN_ASSIGN_OR_RETURN(std::string replaced, IdOf(to, /*create=*/false));
  if (id == replaced && !id.empty()) return absl::OkStatus();
  if (id.empty()) return ForgetPath(to);  // (a file with no chunk: nothing to move)
  std::vector<WriteOp> ops;
  // The replaced file's entries lose their file: Find drops them as met.
  if (!replaced.empty()) {
    ops.push_back(WriteOp{Table::kState, FileKey(replaced), std::nullopt});
    ops.push_back(WriteOp{Table::kState, StatKey(replaced), std::nullopt});
  }
  ops.push_back(WriteOp{Table::kState, PathKey(from), std::nullopt});
  ops.push_back(WriteOp{Table::kState, PathKey(to), id});
  ops.push_back(WriteOp{Table::kState, FileKey(id), to});
  if (known_good) {
    ops.push_back(WriteOp{Table::kState, StatKey(id), Fingerprint(*known_good) + root});
    if (!root.empty()) ops.push_back(WriteOp{Table::kState, RootKey(root) + id, ""});
  } else {
    ops.push_back(WriteOp{Table::kState, StatKey(id), std::nullopt});
  }
  ids_.erase(from);
  ids_.erase(to);
  files_.erase(id);
  if (!replaced.empty()) files_.erase(replaced);
  return meta_->Commit(ops, /*sync=*/false);
}

absl::Status ModelStore::SweepRecords(uint64_t* dropped) {
  // Every record naming a file id: "path" -> id, "file"/"stat" id, "root" .. id.
  std::vector<std::pair<std::string, std::string>> recs;
  CAIRN_RETURN_IF_ERROR(meta_->Scan(Table::kState, "", [&](auto k, auto v) {
    recs.emplace_back(k, v);
    return true;
  }));
  auto live = [&](const std::string& id) -> absl::StatusOr<bool> {
    CAIRN_ASSIGN_OR_RETURN(KnownFile f, FileOf(id));
    return !f.path.empty() && f.exists;
  };
  std::vector<WriteOp> ops;
  for (const auto& [k, v] : recs) {
    std::string id;
    if (k.rfind(kPathPrefix, 0) == 0) {
      id = v;
    } else if (k.rfind(kRootPrefix, 0) == 0 || k.rfind(kFilePrefix, 0) == 0 ||
               k.rfind(kStatPrefix, 0) == 0) {
      if (k.size() < 8) continue;
      id = k.substr(k.size() - 8);
    } else {
      continue;
    }
    CAIRN_ASSIGN_OR_RETURN(bool ok, live(id));
    if (ok) continue;
    ops.push_back(WriteOp{Table::kState, k, std::nullopt});
    ++*dropped;
  }
  files_.clear();
  ids_.clear();
  return ops.empty() ? absl::OkStatus() : meta_->Commit(ops, false);
}

}  // namespace cairn::client
