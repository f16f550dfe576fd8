// The client's managed model store (default $XDG_DATA_HOME/cairn), where
// `cairn pull NAME` puts releases, and the index that lets any later pull
// find a chunk again in a file already on disk instead of fetching it or
// keeping a second copy:
//
//   DIR/models/NS/MODEL/releases/VERSION-HEX12/  one pulled release: its files
//                                                and .cairn/manifest.envelope
//   DIR/models/NS/MODEL/TAG -> releases/...      the newest release pulled
//                                                through TAG (a symlink,
//                                                replaced atomically)
//   DIR/index/   RocksDB, the MetaStore tables used as:
//     kLocal     digest(32) fileid(8) -> offset(8) length(4), big-endian: a
//                file holds the chunk there (as of when it was written)
//     kState     "file" fileid(8)     -> the file's absolute path
//                "path" path          -> its fileid (random; a file renamed
//                into place keeps its id, so its entries are written once;
//                a path with no such record has the id SHA-256(path)[0, 8),
//                as stores made before had)
//                "stat" fileid(8)     -> the file's fingerprint (device,
//                inode, size, modification and change times, ns) and the
//                root of the file it held, when cairn last wrote or
//                verified all of it (see Fingerprint)
//                "root" root-name \0 fileid -> "": that file, with that
//                fingerprint, held exactly the file whose chunk list is root
//     kObjects   chunk list digest name -> its bytes (checked on every read)
//     kEnvelopes manifest digest name   -> signed manifest envelope
//     kTags      name \0 tag            -> the last signed tag verified
//     kReleases  manifest digest name   -> release record (see Release)
//
// A chunk's bytes read from a file are re-hashed, and a file changed or
// removed since only costs a refetch (its stale entries are dropped); the one
// exception is a copy or clone from a file whose fingerprint is unchanged
// since cairn wrote or verified all of it (docs/security.md). Files of
// `--out` trees are indexed too.
// One process at a time opens a store (RocksDB's lock); Open waits for it.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "cairn/hash.h"
#include "cairn/objects.h"
#include "cairn/store.h"
#include "cairn/v1/service.pb.h"

namespace cairn::client {

struct ChunkAt {
  Digest digest;
  uint64_t offset = 0;
  uint32_t length = 0;
};

class ModelStore {
 public:
  struct Location {
    std::string path;
    std::string file_id;      // 8 bytes
    std::string fingerprint;  // as recorded when all of the file was known good; "" if never
    uint64_t offset = 0;
    uint32_t length = 0;
  };
  // A release materialised in the store.
  struct Release {
    std::string digest, name, version;
    std::string dir;        // absolute
    uint64_t bytes = 0;     // allocated on disk when it was pulled
    int64_t last_used = 0;  // Unix seconds: last pulled or resolved offline
    int64_t pulled = 0;     // Unix seconds: first pulled
    bool partial = false;   // only some files were pulled (--include, FILE...)
  };

  // Opens (creating) the store at `dir`. While another process holds it,
  // waits `wait_seconds` (< 0: for ever), telling `log` once.
  static absl::StatusOr<std::unique_ptr<ModelStore>> Open(
      const std::string& dir, int wait_seconds = -1,
      const std::function<void(const std::string&)>& log = nullptr);
  ~ModelStore();

  const std::string& dir() const { return dir_; }
  // DIR/models/NAME/releases/VERSION-HEX12 (HEX12: the manifest digest's
  // first 12 hex digits).
  std::string ReleaseDir(const std::string& name, const std::string& version,
                         const std::string& digest) const;
  // DIR/models/NAME/TAG.
  std::string TagPath(const std::string& name, const std::string& tag) const;

  // ---- chunks ----
  // Whether some existing file is recorded as holding `d` (no byte is read).
  absl::StatusOr<bool> Has(const Digest& d);
  // Where existing files are recorded as holding `d` (entries of files
  // deleted since are dropped).
  absl::StatusOr<std::vector<Location>> Find(const Digest& d);
  // Reads `d` from the first recorded file that still holds it, verified;
  // entries whose bytes no longer match are dropped. NotFound when none does.
  absl::Status Read(const Digest& d, std::string* out);
  // Records that the file at absolute `path` holds `chunks`.
  absl::Status AddLocations(const std::string& path, const std::vector<ChunkAt>& chunks);
  // Forgets that `path` holds `digests`.
  absl::Status DropLocations(const std::string& path, const std::vector<Digest>& digests);
  // What the index knows of a file: its path, whether it existed when first
  // looked at in this process, and the fingerprint and chunk list root
  // recorded when cairn last wrote or verified all of it ("" if never, or
  // since a chunk of it failed a check).
  struct KnownFile {
    std::string path;
    bool exists = false;
    std::string fingerprint;  // kFingerprintSize bytes, or ""
    std::string root;         // "sha256:..." of the file it held, or ""
  };
  static constexpr size_t kFingerprintSize = 40;
  // A file's fingerprint: device, inode, size, and the modification and
  // change times in ns. A write through a local file system moves the
  // change time (which no call can set back); a later pull that finds a
  // file's fingerprint unchanged may take its chunks without hashing them
  // again (docs/security.md, and what it cannot see).
  static std::string Fingerprint(const struct stat& st);
  // Whether fingerprints are worth recording for files on `fd`'s file system
  // (local ones; not NFS, FUSE or SMB, whose times come from elsewhere).
  static bool FingerprintsHold(int fd);
  // The file at `from` was renamed to `to` (replacing what was there): its
  // locations now name `to`, in one small write whatever its size; the
  // locations of the file it replaced are forgotten. With `known_good`
  // (its fstat after the rename), every byte of it is as cairn wrote and
  // verified it as the file whose chunk list is `root`: recorded.
  absl::Status RenameFile(const std::string& from, const std::string& to,
                          const struct stat* known_good = nullptr, const std::string& root = "");
  // Gives the file at `path` a new id: whatever was recorded of it (chunk
  // entries, fingerprint, root) is forgotten.
  absl::Status ForgetPath(const std::string& path);
  // Records that every chunk entry of the file at `path` was verified while
  // it had `st` and held the file whose chunk list is `root`. Only for an id
  // whose entries were all written for this content (after ForgetPath).
  absl::Status NoteKnownGood(const std::string& path, const struct stat& st,
                             const std::string& root);
  // What is recorded of the file at `path` (an empty path if nothing).
  absl::StatusOr<KnownFile> Known(const std::string& path);
  // Existing files recorded as holding the file with chunk list `root`, with
  // their fingerprints (offset 0, length 0); records of files gone or known
  // since as another file are dropped.
  absl::StatusOr<std::vector<Location>> FilesWithRoot(const std::string& root);
  // Forgets the fingerprint of file id `id` (a chunk of it did not verify).
  absl::Status Distrust(const std::string& id);
  // `loc` did not hold `d` when read: the entry goes, and its file's
  // fingerprint.
  absl::Status ForgetLocation(const Location& loc, const Digest& d);
  // Forgets what is recorded of every file of release `digest` (ForgetPath):
  // it failed a check, so nothing of it is trusted by fingerprint.
  absl::Status ForgetRelease(const std::string& digest);
  // The fingerprint recorded for file id `id` now (cleared as soon as a chunk
  // of it fails a check in this process), or "".
  absl::StatusOr<std::string> FingerprintOf(const std::string& id);
  // Drops the records of files that are gone ("path", "file", "stat", "root").
  absl::Status SweepRecords(uint64_t* dropped);
  // Forgets every location whose file is gone or changed (re-reads all of
  // them). Returns how many entries were dropped and how many checked.
  absl::Status Scrub(uint64_t* dropped, uint64_t* checked);

  // ---- metadata ----
  absl::Status PutObject(const std::string& digest_name, const std::string& bytes);
  absl::StatusOr<std::string> GetObject(const std::string& digest_name);  // NotFound
  absl::Status PutEnvelope(const std::string& digest_name, const std::string& envelope);
  absl::StatusOr<std::string> GetEnvelope(const std::string& digest_name);  // NotFound
  absl::Status PutTag(const std::string& name, const std::string& tag, const std::string& envelope);
  absl::StatusOr<std::string> GetTag(const std::string& name, const std::string& tag);

  // What `ref` (NAME[:TAG], NAME@VERSION, NAME@sha256:...) names here: the
  // signed manifest envelope (and the tag's, by tag) as stored, unverified.
  // NotFound when the store never held it; DataLoss for a corrupt tag record.
  absl::StatusOr<cairn::v1::ResolveResponse> Resolve(const std::string& ref);

  // ---- releases ----
  absl::Status PutRelease(const Release& r);
  absl::StatusOr<Release> GetRelease(const std::string& digest);  // NotFound
  absl::StatusOr<std::vector<Release>> Releases();
  // Points DIR/models/NAME/TAG at `release_dir` (atomically).
  absl::Status LinkTag(const std::string& name, const std::string& tag,
                       const std::string& release_dir);
  // The tags whose link points at `release_dir`.
  std::vector<std::string> TagsOf(const std::string& name, const std::string& release_dir) const;
  // Deletes the release's directory, the tag links pointing at it, its
  // record and its files' locations.
  absl::Status Remove(const std::string& digest);
  // Total bytes on disk: releases, the index and files left by interrupted
  // pulls.
  absl::StatusOr<uint64_t> SizeOnDisk();
  // Removes least recently used releases (never `keep`) until the store
  // fits in `max_bytes`. Returns the removed ones.
  absl::StatusOr<std::vector<Release>> Evict(uint64_t max_bytes, const std::string& keep);

 private:
  ModelStore(std::string dir, std::unique_ptr<MetaStore> meta);
  absl::Status DropEntry(const std::string& key);
  // The id of the file at `path`; with `create`, a new one when it has none
  // (written with `ops`, which the caller commits).
  absl::StatusOr<std::string> IdOf(const std::string& path, bool create,
                                   std::vector<WriteOp>* ops = nullptr);
  // What is recorded of file id `id` (an empty path when the id names no
  // file), looked up once per process.
  absl::StatusOr<KnownFile> FileOf(const std::string& id);

  std::string dir_;
  std::unique_ptr<MetaStore> meta_;
  absl::flat_hash_map<std::string, std::string> ids_;  // path -> id, as written here
  absl::flat_hash_map<std::string, KnownFile> files_;  // id -> file, as looked up
};

// Bytes the files under `path` occupy on disk (st_blocks), not following
// symlinks.
uint64_t DiskUsage(const std::string& path);
// "NS/MODEL" safe for a path? The name was validated, so it is; this
// only maps the version to a directory name.
std::string ReleaseDirName(const std::string& version, const std::string& digest);
// $XDG_DATA_HOME/cairn, else ~/.local/share/cairn.
std::string DefaultStoreDir();
using cairn::ParseSize;

}  // namespace cairn::client
