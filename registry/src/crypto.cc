#include "cairn/crypto.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cairn/hash.h"
#include "cairn/status.h"

namespace cairn {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

std::string OpensslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

}  // namespace

std::string KeyIdOf(std::string_view raw_public) {
  Digest d = Sha256Of(raw_public);
  return ToHex(d.data(), 16);
}

SigningKey::SigningKey(std::unique_ptr<EVP_PKEY, EvpPkeyFree> k, bool has_private)
    : pkey_(std::move(k)), has_private_(has_private) {
  size_t len = 32;
  raw_public_.resize(32);
  if (EVP_PKEY_get_raw_public_key(pkey_.get(), reinterpret_cast<unsigned char*>(raw_public_.data()),
                                  &len) != 1 ||
      len != 32) {
    std::abort();  // factories check the key type first
  }
  key_id_ = KeyIdOf(raw_public_);
}

absl::StatusOr<std::unique_ptr<SigningKey>> SigningKey::Generate() {
  EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (k == nullptr) return absl::InternalError("Ed25519 key generation failed: " + OpensslError());
  return std::unique_ptr<SigningKey>(
      new SigningKey(std::unique_ptr<EVP_PKEY, EvpPkeyFree>(k), true));
}

namespace {

// Reads a PEM key file with `read` (PEM_read_bio_PrivateKey or _PUBKEY) and
// checks it is Ed25519.
template <typename ReadFn>
absl::StatusOr<std::unique_ptr<EVP_PKEY, EvpPkeyFree>> ParsePem(std::string_view pem,
                                                                const std::string& source,
                                                                std::string_view what,
                                                                ReadFn read) {
  if (pem.size() > (64 << 10)) {
    return absl::InvalidArgumentError(StrCat("key file ", source, " is too large for a key"));
  }
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  std::unique_ptr<EVP_PKEY, EvpPkeyFree> k(read(bio.get()));
  if (!k) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        StrCat("key file ", source, " is not a valid PEM ", what, " (corrupt or truncated?)"));
  }
  if (EVP_PKEY_get_base_id(k.get()) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError(StrCat("key file ", source, " is not an Ed25519 key"));
  }
  return k;
}

EVP_PKEY* ReadPrivate(BIO* b) {
  return PEM_read_bio_PrivateKey(b, nullptr, nullptr, const_cast<char*>(""));
}
EVP_PKEY* ReadPublic(BIO* b) { return PEM_read_bio_PUBKEY(b, nullptr, nullptr, nullptr); }

}  // namespace

absl::StatusOr<std::unique_ptr<SigningKey>> SigningKey::ParsePrivate(std::string_view pem,
                                                                     const std::string& source) {
  CAIRN_ASSIGN_OR_RETURN(auto k, ParsePem(pem, source, "private key", ReadPrivate));
  return std::unique_ptr<SigningKey>(new SigningKey(std::move(k), true));
}

absl::StatusOr<std::unique_ptr<SigningKey>> SigningKey::ParsePublic(std::string_view pem,
                                                                    const std::string& source) {
  CAIRN_ASSIGN_OR_RETURN(auto k, ParsePem(pem, source, "public key", ReadPublic));
  return std::unique_ptr<SigningKey>(new SigningKey(std::move(k), false));
}

absl::StatusOr<std::unique_ptr<SigningKey>> SigningKey::LoadPrivate(const std::string& path) {
  CAIRN_ASSIGN_OR_RETURN(std::string pem, ReadFileLimited(path, 64 << 10));
  return ParsePrivate(pem, path);
}

absl::StatusOr<std::unique_ptr<SigningKey>> SigningKey::LoadPublic(const std::string& path) {
  CAIRN_ASSIGN_OR_RETURN(std::string pem, ReadFileLimited(path, 64 << 10));
  return ParsePublic(pem, path);
}

absl::Status SigningKey::Save(const std::string& path) const {
  if (!has_private_) return absl::FailedPreconditionError("no private key to save");
  std::unique_ptr<BIO, BioFree> priv(BIO_new(BIO_s_mem()));
  std::unique_ptr<BIO, BioFree> pub(BIO_new(BIO_s_mem()));
  if (PEM_write_bio_PrivateKey(priv.get(), pkey_.get(), nullptr, nullptr, 0, nullptr, nullptr) !=
          1 ||
      PEM_write_bio_PUBKEY(pub.get(), pkey_.get()) != 1) {
    return absl::InternalError("PEM encoding failed: " + OpensslError());
  }
  auto bio_str = [](BIO* b) {
    char* p = nullptr;
    long n = BIO_get_mem_data(b, &p);
    return std::string(p, n);
  };
  // Neither half may replace an existing file (or a symlink, even dangling).
  for (const std::string& p : {path, path + ".pub"}) {
    struct stat st;
    if (::lstat(p.c_str(), &st) == 0) {
      return absl::AlreadyExistsError(StrCat(p, " already exists; not overwriting a key"));
    }
  }
  CAIRN_RETURN_IF_ERROR(WriteFileAtomic(path, bio_str(priv.get()), 0600));
  return WriteFileAtomic(path + ".pub", bio_str(pub.get()), 0644);
}

cairn::v1::PublicKey SigningKey::ToProto() const {
  cairn::v1::PublicKey p;
  p.set_key_id(key_id_);
  p.set_ed25519(raw_public_);
  return p;
}

absl::StatusOr<std::string> SigningKey::Sign(std::string_view message) const {
  if (!has_private_)
    return absl::FailedPreconditionError("key " + key_id_ + " has no private half");
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  std::string sig(64, '\0');
  size_t len = sig.size();
  if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1) {
    return absl::InternalError("Ed25519 signing failed: " + OpensslError());
  }
  sig.resize(len);
  return sig;
}

bool VerifyEd25519(std::string_view raw_public, std::string_view message, std::string_view sig) {
  if (raw_public.size() != 32 || sig.size() != 64) return false;
  std::unique_ptr<EVP_PKEY, EvpPkeyFree> k(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw_public.data()), 32));
  if (!k) {
    ERR_clear_error();
    return false;
  }
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  bool ok =
      EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, k.get()) == 1 &&
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  ERR_clear_error();
  return ok;
}

std::string Pae(std::string_view payload_type, std::string_view payload) {
  return StrCat("DSSEv1 ", payload_type.size(), " ", payload_type, " ", payload.size(), " ",
                payload);
}

absl::StatusOr<cairn::v1::Envelope> SignEnvelope(std::string_view payload_type, std::string payload,
                                                 const std::vector<const SigningKey*>& keys) {
  cairn::v1::Envelope e;
  e.set_payload_type(std::string(payload_type));
  std::string pae = Pae(payload_type, payload);
  e.set_payload(std::move(payload));
  for (const SigningKey* k : keys) {
    CAIRN_ASSIGN_OR_RETURN(std::string sig, k->Sign(pae));
    auto* s = e.add_signatures();
    s->set_key_id(k->key_id());
    s->set_sig(std::move(sig));
  }
  return e;
}

absl::Status AddSignatures(cairn::v1::Envelope* env, const std::vector<const SigningKey*>& keys) {
  std::string pae = Pae(env->payload_type(), env->payload());
  for (const SigningKey* k : keys) {
    bool present = false;
    for (const auto& s : env->signatures()) present |= s.key_id() == k->key_id();
    if (present) continue;
    CAIRN_ASSIGN_OR_RETURN(std::string sig, k->Sign(pae));
    auto* s = env->add_signatures();
    s->set_key_id(k->key_id());
    s->set_sig(std::move(sig));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFileLimited(const std::string& path, size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "cannot open " + path);
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(path + " is not a regular file");
  }
  if (static_cast<size_t>(st.st_size) > max_bytes) {
    ::close(fd);
    return absl::InvalidArgumentError(
        StrCat(path, " is ", st.st_size, " bytes, over the limit of ", max_bytes));
  }
  std::string out(st.st_size, '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t r = ::read(fd, out.data() + got, out.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int err = r < 0 ? errno : EIO;
      ::close(fd);
      return ErrnoStatus(err, "cannot read " + path);
    }
    got += r;
  }
  ::close(fd);
  return out;
}

absl::Status WriteFileAtomic(const std::string& path, std::string_view data, int mode) {
  std::string tmp = StrCat(path, ".tmp.", ::getpid());
  // A new file, never an existing one: whoever can write the directory may
  // have planted a symlink at this name (to a file of the caller's).
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoStatus(errno, "cannot create " + tmp);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t w = ::write(fd, data.data() + done, data.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return ErrnoStatus(err, "cannot write " + tmp);
    }
    done += w;
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, "cannot sync " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(err, "cannot rename to " + path);
  }
  return absl::OkStatus();
}

}  // namespace cairn
