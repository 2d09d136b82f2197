// safetensors reader/writer: round trips, a hand-built golden file, and one test per malformed-file rule.
#include "models/safetensors.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include <torch/torch.h>

#include "models/error.h"
#include "tests/test_support.h"

namespace fs = std::filesystem;

namespace {

// A safetensors file from its parts: u64 LE header length, header text, data buffer.
std::string st_bytes(const std::string & header, const std::string & data = {}) {
    std::string out(8, '\0');
    const uint64_t n = header.size();
    std::memcpy(out.data(), &n, 8);
    return out + header + data;
}

// Opens `path` expecting ct3::Error whose message names the file and contains every `parts`.
ct3::ErrorKind expect_open_error(const fs::path & path, const std::vector<std::string> & parts) {
    try {
        ct3::SafetensorsFile::open(path);
    } catch (const ct3::Error & e) {
        const std::string what = e.what();
        EXPECT_NE(what.find(path.string()), std::string::npos) << "message does not name the file: " << what;
        for (const auto & p : parts) EXPECT_NE(what.find(p), std::string::npos) << "missing '" << p << "' in: " << what;
        return e.kind();
    }
    ADD_FAILURE() << "expected ct3::Error opening " << path;
    return ct3::ErrorKind::internal;
}

class SafetensorsBad : public ::testing::Test {
protected:
    // Writes a file with `header` and `data` and expects open() to throw bad_format mentioning `parts`.
    void expect_bad(const std::string & header, const std::string & data, const std::vector<std::string> & parts) {
        const fs::path path = dir_.path() / "bad.safetensors";
        ct3::test::write_file(path, st_bytes(header, data));
        EXPECT_EQ(expect_open_error(path, parts), ct3::ErrorKind::bad_format);
    }
    fs::path write(const std::string & name, const std::string & bytes) {
        ct3::test::write_file(dir_.path() / name, bytes);
        return dir_.path() / name;
    }
    ct3::test::TempDir dir_;
};

const std::string f32_two = R"("dtype":"F32","shape":[2],"data_offsets":[0,8])";

}  // namespace

TEST(Safetensors, RoundTripsDtypesShapesAndMetadata) {
    ct3::test::TempDir dir;
    torch::manual_seed(0);
    std::vector<std::pair<std::string, at::Tensor>> tensors = {
        {"w.f32", torch::randn({3, 4})},
        {"w.f16", torch::randn({5}).to(torch::kHalf)},
        {"w.bf16", torch::randn({2, 3}).to(torch::kBFloat16)},
        {"w.f64", torch::randn({2}, torch::kDouble)},
        {"ids.i64", torch::tensor({int64_t(-1), int64_t(1) << 40, int64_t(7)})},
        {"ids.i32", torch::tensor({-3, 4}, torch::kInt)},
        {"ids.i16", torch::tensor({-3, 4}, torch::kShort)},
        {"ids.i8", torch::tensor({-3, 4}, torch::kChar)},
        {"ids.u8", torch::tensor({0, 255}, torch::kByte)},
        {"mask", torch::tensor({true, false, true})},
        {"scalar", torch::tensor(2.5f)},
        {"empty", torch::zeros({0, 3})},
        {"transposed", torch::arange(6, torch::kFloat).reshape({2, 3}).t()},  // non-contiguous input
    };
    const fs::path path = dir.path() / "rt.safetensors";
    ct3::save_safetensors(path, tensors, {{"format", "pt"}, {"step", "7"}});
    EXPECT_FALSE(fs::exists(path.string() + ".tmp." + std::to_string(::getpid())));

    // The data buffer starts 8-byte aligned, as HF writes it.
    const std::string bytes = ct3::test::read_file(path);
    uint64_t header_size = 0;
    std::memcpy(&header_size, bytes.data(), 8);
    EXPECT_EQ((8 + header_size) % 8, 0u);

    auto file = ct3::SafetensorsFile::open(path);
    EXPECT_EQ(file->metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"step", "7"}}));
    ASSERT_EQ(file->tensors().size(), tensors.size());
    for (const auto & [name, expected] : tensors) {
        SCOPED_TRACE(name);
        const at::Tensor got = file->load(name);
        EXPECT_EQ(got.scalar_type(), expected.scalar_type());
        EXPECT_EQ(got.sizes().vec(), expected.sizes().vec());
        EXPECT_TRUE(torch::equal(got, expected));
    }
    EXPECT_EQ(file->info("scalar").shape.size(), 0u);
    EXPECT_EQ(file->info("w.bf16").dtype, "BF16");
    // Names are sorted, so offsets follow name order.
    EXPECT_EQ(file->info("empty").begin, 0u);
}

TEST(Safetensors, ReadsHandBuiltGoldenBytes) {
    ct3::test::TempDir dir;
    // Values picked for exact bit patterns: 1.5f = 0x3FC00000, -2.0f = 0xC0000000,
    // F16 1.0 = 0x3C00, BF16 -1.0 = 0xBF80, I64 42.
    const std::string header =
        R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
        R"("b":{"dtype":"I64","shape":[],"data_offsets":[8,16]},)"
        R"("h":{"dtype":"F16","shape":[1],"data_offsets":[16,18]},)"
        R"("z":{"dtype":"F32","shape":[0],"data_offsets":[18,18]},)"
        R"("bf":{"dtype":"BF16","shape":[1,1],"data_offsets":[18,20]}}  )";
    const std::string data = std::string("\x00\x00\xC0\x3F\x00\x00\x00\xC0", 8) +
                             std::string("\x2A\x00\x00\x00\x00\x00\x00\x00", 8) + std::string("\x00\x3C", 2) +
                             std::string("\x80\xBF", 2);
    const fs::path path = dir.path() / "golden.safetensors";
    ct3::test::write_file(path, st_bytes(header, data));

    auto file = ct3::SafetensorsFile::open(path);
    EXPECT_EQ(file->metadata().at("format"), "pt");
    const at::Tensor a = file->load("a");
    ASSERT_EQ(a.scalar_type(), torch::kFloat);
    EXPECT_EQ(a[0].item<float>(), 1.5f);
    EXPECT_EQ(a[1].item<float>(), -2.0f);
    const at::Tensor b = file->load("b");
    EXPECT_EQ(b.dim(), 0);
    EXPECT_EQ(b.item<int64_t>(), 42);
    EXPECT_EQ(file->load("h").to(torch::kFloat).item<float>(), 1.0f);
    EXPECT_EQ(file->load("z").numel(), 0);
    const at::Tensor bf = file->load("bf");
    EXPECT_EQ(bf.sizes().vec(), (std::vector<int64_t>{1, 1}));
    EXPECT_EQ(bf.to(torch::kFloat).item<float>(), -1.0f);
}

TEST(Safetensors, EmptyHeaderAndZeroTensorsIsValid) {
    ct3::test::TempDir dir;
    ct3::test::write_file(dir.path() / "e.safetensors", st_bytes("{}"));
    auto file = ct3::SafetensorsFile::open(dir.path() / "e.safetensors");
    EXPECT_TRUE(file->tensors().empty());
}

TEST(Safetensors, MissingTensorListsCloseNames) {
    ct3::test::TempDir dir;
    const fs::path path = dir.path() / "m.safetensors";
    ct3::save_safetensors(path, {{"model.layers.0.mlp.up_proj.weight", torch::ones({2})},
                                 {"model.layers.1.mlp.up_proj.weight", torch::ones({2})},
                                 {"lm_head.weight", torch::ones({2})}});
    auto file = ct3::SafetensorsFile::open(path);
    try {
        file->load("layers.0.mlp.up_proj.weight");
        FAIL() << "expected not_found";
    } catch (const ct3::Error & e) {
        EXPECT_EQ(e.kind(), ct3::ErrorKind::not_found);
        const std::string what = e.what();
        EXPECT_NE(what.find(path.string()), std::string::npos) << what;
        EXPECT_NE(what.find("'model.layers.0.mlp.up_proj.weight'"), std::string::npos) << what;
        EXPECT_EQ(what.find("lm_head"), std::string::npos) << what;
    }
}

TEST(Safetensors, MissingFileIsNotFound) {
    ct3::test::TempDir dir;
    EXPECT_EQ(expect_open_error(dir.path() / "nope.safetensors", {"cannot open"}), ct3::ErrorKind::not_found);
}

TEST(Safetensors, SaveRejectsBadInput) {
    ct3::test::TempDir dir;
    const fs::path path = dir.path() / "s.safetensors";
    EXPECT_THROW(ct3::save_safetensors(path, {{"a", torch::ones({1})}, {"a", torch::ones({1})}}), ct3::Error);
    EXPECT_THROW(ct3::save_safetensors(path, {{"__metadata__", torch::ones({1})}}), ct3::Error);
    EXPECT_THROW(ct3::save_safetensors(path, {{"a", at::Tensor()}}), ct3::Error);
    EXPECT_THROW(ct3::save_safetensors(path, {{"c", torch::ones({1}, torch::kComplexFloat)}}), ct3::Error);
    EXPECT_THROW(ct3::save_safetensors(path, {{"s", torch::eye(2).to_sparse()}}), ct3::Error);
    EXPECT_FALSE(fs::exists(path));
    try {
        ct3::save_safetensors(dir.path() / "no_such_dir" / "x.safetensors", {{"a", torch::ones({1})}});
        FAIL() << "expected io error";
    } catch (const ct3::Error & e) {
        EXPECT_EQ(e.kind(), ct3::ErrorKind::io);
        EXPECT_NE(std::string(e.what()).find("no_such_dir"), std::string::npos);
    }
}

TEST(Safetensors, SaveReplacesExistingFileAtomically) {
    ct3::test::TempDir dir;
    const fs::path path = dir.path() / "r.safetensors";
    ct3::save_safetensors(path, {{"a", torch::ones({4})}});
    auto old_file = ct3::SafetensorsFile::open(path);  // a live mapping of the old file stays valid
    ct3::save_safetensors(path, {{"b", torch::zeros({2})}});
    EXPECT_TRUE(torch::equal(old_file->load("a"), torch::ones({4})));
    auto new_file = ct3::SafetensorsFile::open(path);
    EXPECT_FALSE(new_file->contains("a"));
    EXPECT_TRUE(torch::equal(new_file->load("b"), torch::zeros({2})));
    EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);
}

TEST(Safetensors, UnsupportedDtypeOpensButLoadThrows) {
    ct3::test::TempDir dir;
    const fs::path path = dir.path() / "u.safetensors";
    ct3::test::write_file(path, st_bytes(R"({"u":{"dtype":"U32","shape":[1],"data_offsets":[0,4]}})", "abcd"));
    auto file = ct3::SafetensorsFile::open(path);
    try {
        file->load("u");
        FAIL() << "expected unsupported";
    } catch (const ct3::Error & e) {
        EXPECT_EQ(e.kind(), ct3::ErrorKind::unsupported);
        EXPECT_NE(std::string(e.what()).find("'u'"), std::string::npos);
    }
}

TEST(Safetensors, BoolBytesOtherThanZeroOneAreRejectedOnLoad) {
    ct3::test::TempDir dir;
    const fs::path path = dir.path() / "b.safetensors";
    ct3::test::write_file(path, st_bytes(R"({"m":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", "\x01\x02"));
    auto file = ct3::SafetensorsFile::open(path);
    EXPECT_THROW(file->load("m"), ct3::Error);
}

TEST_F(SafetensorsBad, FileShorterThanEightBytes) {
    EXPECT_EQ(expect_open_error(write("short.safetensors", "\x02\x00\x00"), {"too short"}), ct3::ErrorKind::bad_format);
    EXPECT_EQ(expect_open_error(write("empty.safetensors", ""), {"too short"}), ct3::ErrorKind::bad_format);
}

TEST_F(SafetensorsBad, HeaderLengthOver100MB) {
    std::string bytes(64, ' ');
    const uint64_t n = 200ull * 1000 * 1000;
    std::memcpy(bytes.data(), &n, 8);
    EXPECT_EQ(expect_open_error(write("big.safetensors", bytes), {"100 MB"}), ct3::ErrorKind::bad_format);
}

TEST_F(SafetensorsBad, HeaderLengthBeyondFile) {
    std::string bytes = st_bytes("{}");
    const uint64_t n = 1000;
    std::memcpy(bytes.data(), &n, 8);
    EXPECT_EQ(expect_open_error(write("trunc.safetensors", bytes), {"header length 1000"}), ct3::ErrorKind::bad_format);
}

TEST_F(SafetensorsBad, HeaderNotJson) { expect_bad(R"({"a": {"dtype": )", "", {"not valid JSON"}); }
TEST_F(SafetensorsBad, HeaderInvalidUtf8) { expect_bad("{\"\xff\xfe\":1}", "", {"not valid JSON"}); }
TEST_F(SafetensorsBad, HeaderNotObject) { expect_bad("[1, 2]", "", {"expected an object"}); }
TEST_F(SafetensorsBad, EntryNotObject) { expect_bad(R"({"w": 3})", "", {"'w'", "expected an object"}); }

TEST_F(SafetensorsBad, DuplicateTensorNames) {
    expect_bad("{\"w\":{" + f32_two + "},\"w\":{" + f32_two + "}}", std::string(8, '\0'), {"duplicate", "'w'"});
}

TEST_F(SafetensorsBad, DuplicateFieldInsideEntry) {
    expect_bad(R"({"w":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0'),
               {"duplicate", "'dtype'"});
}

TEST_F(SafetensorsBad, DeepNestingIsRejectedWithoutStackOverflow) {
    expect_bad("{\"w\":" + std::string(100000, '[') + std::string(100000, ']') + "}", "", {"nested deeper"});
}

TEST_F(SafetensorsBad, UnknownDtype) {
    expect_bad(R"({"w":{"dtype":"F99","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0'), {"'w'", "F99"});
}

TEST_F(SafetensorsBad, MissingDtype) {
    expect_bad(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0'), {"'w'", "dtype"});
}

TEST_F(SafetensorsBad, ShapeNotAList) {
    expect_bad(R"({"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", std::string(8, '\0'), {"'w'", "shape"});
}

TEST_F(SafetensorsBad, ShapeNegativeDimension) {
    expect_bad(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, '\0'),
               {"'w'", "non-negative"});
}

TEST_F(SafetensorsBad, ShapeNonIntegerDimension) {
    expect_bad(R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", std::string(8, '\0'),
               {"'w'", "non-negative integers"});
    expect_bad(R"({"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", std::string(8, '\0'),
               {"'w'", "non-negative integers"});
}

TEST_F(SafetensorsBad, ShapeProductOverflows) {
    // 2^32 * 2^32 * 4 bytes wraps to 0 in 64 bits: must not pass as a zero-size tensor.
    expect_bad(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", "",
               {"'w'", "overflows"});
    expect_bad(R"({"w":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})", "",
               {"'w'", "overflows"});
    expect_bad(R"({"w":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,0]}})", "", {"'w'"});
}

TEST_F(SafetensorsBad, DataOffsetsNotTwoIntegers) {
    expect_bad(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", std::string(8, '\0'),
               {"'w'", "data_offsets"});
    expect_bad(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,"8"]}})", std::string(8, '\0'),
               {"'w'", "data_offsets"});
    expect_bad(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", std::string(8, '\0'),
               {"'w'", "data_offsets"});
    expect_bad(R"({"w":{"dtype":"F32","shape":[2]}})", std::string(8, '\0'), {"'w'", "data_offsets"});
}

TEST_F(SafetensorsBad, DataOffsetsBeginAfterEnd) {
    expect_bad(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", std::string(8, '\0'),
               {"'w'", "begin > end"});
}

TEST_F(SafetensorsBad, ByteCountDoesNotMatchShape) {
    expect_bad(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", std::string(4, '\0'),
               {"'w'", "needs 8 bytes"});
}

TEST_F(SafetensorsBad, RangeBeyondBuffer) {
    expect_bad("{\"w\":{" + f32_two + "}}", std::string(4, '\0'), {"'w'", "beyond"});
}

TEST_F(SafetensorsBad, OverlappingRanges) {
    expect_bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
               R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
               std::string(12, '\0'), {"overlaps", "'a'", "'b'"});
    // The same range twice is an overlap too.
    expect_bad("{\"a\":{" + f32_two + "},\"b\":{" + f32_two + "}}", std::string(8, '\0'), {"overlaps"});
}

TEST_F(SafetensorsBad, GapBetweenRanges) {
    expect_bad(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
               R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
               std::string(12, '\0'), {"gap", "'b'"});
}

TEST_F(SafetensorsBad, TrailingBytesAfterLastTensor) {
    expect_bad(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(8, '\0'), {"trailing"});
    expect_bad("{}", "x", {"trailing"});
}

TEST_F(SafetensorsBad, MetadataValueNotString) {
    expect_bad(R"({"__metadata__":{"step":7}})", "", {"__metadata__", "'step'", "string"});
}

TEST_F(SafetensorsBad, MetadataNotObject) { expect_bad(R"({"__metadata__":["pt"]})", "", {"__metadata__"}); }

TEST_F(SafetensorsBad, DirectoryOrFifoIsRejectedWithoutBlocking) {
    EXPECT_EQ(expect_open_error(dir_.path(), {"not a regular file"}), ct3::ErrorKind::io);
    const fs::path fifo = dir_.path() / "pipe.safetensors";
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    EXPECT_EQ(expect_open_error(fifo, {"not a regular file"}), ct3::ErrorKind::io);
}

TEST_F(SafetensorsBad, ParseErrorMessageEscapesRawBytes) {
    const fs::path path = write("raw.safetensors", st_bytes("{\"\xff\x1b\":1}"));
    try {
        ct3::SafetensorsFile::open(path);
        FAIL() << "expected ct3::Error";
    } catch (const ct3::Error & e) {
        for (unsigned char c : std::string(e.what())) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << int(c);
    }
}

TEST_F(SafetensorsBad, TruncatedValidFileAlwaysThrows) {
    const fs::path good = dir_.path() / "good.safetensors";
    ct3::save_safetensors(good, {{"a", torch::randn({3, 5})}, {"b", torch::ones({2}, torch::kHalf)},
                                 {"c", torch::tensor(int64_t(3))}});
    const std::string bytes = ct3::test::read_file(good);
    ASSERT_NO_THROW(ct3::SafetensorsFile::open(good));
    const fs::path cut = dir_.path() / "cut.safetensors";
    for (size_t len = 0; len < bytes.size(); ++len) {
        SCOPED_TRACE(len);
        ct3::test::write_file(cut, bytes.substr(0, len));
        expect_open_error(cut, {});
    }
}

TEST_F(SafetensorsBad, RandomHeaderByteFlipsNeverCrash) {
    const fs::path good = dir_.path() / "good.safetensors";
    ct3::save_safetensors(good, {{"a", torch::randn({3, 5})}, {"b", torch::ones({2}, torch::kHalf)},
                                 {"c", torch::tensor(int64_t(3))}, {"d", torch::tensor({true, false})}},
                          {{"format", "pt"}});
    const std::string bytes = ct3::test::read_file(good);
    uint64_t header_size = 0;
    std::memcpy(&header_size, bytes.data(), 8);
    std::mt19937 rng(1234);
    std::uniform_int_distribution<size_t> where(0, size_t(8 + header_size - 1));
    std::uniform_int_distribution<int> value(0, 255);
    std::uniform_int_distribution<int> n_flips(1, 3);
    const fs::path fuzzed = dir_.path() / "fuzzed.safetensors";
    int n_opened = 0;
    for (int iteration = 0; iteration < 200; ++iteration) {
        std::string mutated = bytes;
        for (int i = n_flips(rng); i > 0; --i) mutated[where(rng)] = char(value(rng));
        ct3::test::write_file(fuzzed, mutated);
        try {
            auto file = ct3::SafetensorsFile::open(fuzzed);
            ++n_opened;
            for (const auto & t : file->tensors()) {
                try {
                    file->load(t.name);
                } catch (const ct3::Error &) {
                }
            }
        } catch (const ct3::Error &) {
        }
    }
    // Some flips land in whitespace-insensitive spots or tensor values; most break the header.
    EXPECT_LT(n_opened, 200);
}
