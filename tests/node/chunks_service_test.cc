// Chunks.GetMany as the node writes it: the response messages are built by
// hand on raw byte buffers (no second copy of the chunk bytes), so these
// tests parse them with the generated protobuf code and check every field.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "cairn/hash.h"
#include "cairn/objects.h"
#include "cairn/repository.h"
#include "cairn/transport/channel.h"
#include "cairn/v1/service.grpc.pb.h"
#include "client.h"
#include "server.h"
#include "testing.h"

namespace cairn {
namespace {

using ::cairn::testing::TrustFixture;

class ChunksServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trust_ = TrustFixture::Make("acme");
    trust_.Save(dir_ / "keys");
    repo_ = std::move(Repository::Open(dir_ / "node", trust_.view, {})).value();
    server_ = std::move(node::NodeServer::Start(repo_.get(), "127.0.0.1:0", {})).value();
    // 6 MiB of random bytes: about 90 chunks, three response messages' worth.
    testing::WriteFile(dir_ / "m/w.bin", testing::RandomBytes(6 << 20, 7));
    auto conn = std::move(Connection::Open(server_->address(), 10)).value();
    client::PublishOptions o;
    o.dir = dir_ / "m";
    o.name = "acme/m";
    o.version = std::string(1, '1');
    o.key_paths = {dir_ / "keys/publisher.key"};
    ASSERT_TRUE(client::Publish(*conn, o).ok());
    ASSERT_TRUE(repo_->chunks()->List(nullptr, 1000, &stored_).ok());
    ASSERT_GT(stored_.size(), 40u);
  }
  testing::TempDir dir_;
  TrustFixture trust_;
  std::unique_ptr<Repository> repo_;
  std::unique_ptr<node::NodeServer> server_;
  std::vector<Digest> stored_;
};

TEST_F(ChunksServiceTest, AnswersEveryDigestInOrderWithItsBytesOrMissing) {
  auto stub = cairn::v1::Chunks::NewStub(NewChannel(server_->address(), {}));
  grpc::ClientContext ctx;
  auto stream = stub->GetMany(&ctx);
  // Two requests: the first names every stored chunk with an unknown digest
  // in the middle; the second one chunk.
  Digest unknown = Sha256Of("not stored here");
  std::vector<Digest> asked;
  for (int i = 0; i < kMaxChunksPerMessage && i < static_cast<int>(stored_.size()); ++i) {
    if (i == 5) asked.push_back(unknown);
    asked.push_back(stored_[i]);
  }
  asked.resize(std::min<size_t>(asked.size(), kMaxChunksPerMessage));
  cairn::v1::GetChunksRequest req;
  for (const Digest& d : asked) req.add_digests(std::string(DigestBytes(d)));
  ASSERT_TRUE(stream->Write(req));
  req.Clear();
  req.add_digests(std::string(DigestBytes(stored_.back())));
  asked.push_back(stored_.back());
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->WritesDone());

  cairn::v1::GetChunksResponse resp;
  size_t next = 0, messages = 0, largest = 0;
  while (stream->Read(&resp)) {
    ++messages;
    largest = std::max(largest, resp.ByteSizeLong());
    for (const auto& c : resp.chunks()) {
      ASSERT_LT(next, asked.size());
      EXPECT_EQ(c.digest(), DigestBytes(asked[next])) << next;
      if (asked[next] == unknown) {
        EXPECT_TRUE(c.missing());
        EXPECT_TRUE(c.data().empty());
      } else {
        EXPECT_FALSE(c.missing());
        EXPECT_EQ(Sha256Of(c.data()), asked[next]) << next;
      }
      ++next;
    }
  }
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_EQ(next, asked.size());
  // Answered in messages of about 2 MiB, not one per request.
  EXPECT_GE(messages, 3u);
  EXPECT_LT(largest, size_t{3} << 20);
}

TEST_F(ChunksServiceTest, AnUnparsableRequestEndsTheStreamWithInvalidArgument) {
  auto ch = NewChannel(server_->address(), {});
  grpc::GenericStub generic(ch);
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  auto call = generic.PrepareCall(&ctx, "/cairn.v1.Chunks/GetMany", &cq);
  void* tag;
  bool ok;
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  // Field 1 as a length-delimited field that claims more bytes than follow.
  std::string junk = "\x0a\x7f\x01\x02";
  grpc::Slice slice(junk);
  grpc::ByteBuffer bb(&slice, 1);
  call->Write(bb, reinterpret_cast<void*>(2));
  ASSERT_TRUE(cq.Next(&tag, &ok));
  grpc::ByteBuffer got;
  call->Read(&got, reinterpret_cast<void*>(3));
  ASSERT_TRUE(cq.Next(&tag, &ok));
  EXPECT_FALSE(ok);  // no answer: the stream ends
  grpc::Status st;
  call->Finish(&st, reinterpret_cast<void*>(4));
  ASSERT_TRUE(cq.Next(&tag, &ok));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

}  // namespace
}  // namespace cairn
