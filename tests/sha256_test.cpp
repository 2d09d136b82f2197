#include "models/sha256.h"

#include <gtest/gtest.h>

#include "models/error.h"
#include "tests/test_support.h"

namespace {

// FIPS 180-4 / NIST example vectors.
TEST(Sha256, KnownVectors) {
    EXPECT_EQ(ct3::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(ct3::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(ct3::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    EXPECT_EQ(ct3::sha256_hex(std::string(1000000, 'a')),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256, IncrementalUpdatesEqualOneShot) {
    std::string text;
    for (int i = 0; i < 300; ++i) text += char('a' + i % 26);
    for (size_t split : {0u, 1u, 55u, 56u, 63u, 64u, 65u, 128u, 299u}) {
        ct3::Sha256 hash;
        hash.update(text.substr(0, split));
        hash.update(text.substr(split));
        EXPECT_EQ(hash.hex_digest(), ct3::sha256_hex(text)) << "split at " << split;
    }
}

TEST(Sha256, FileMatchesBytesAndMissingFileNamesPath) {
    ct3::test::TempDir dir;
    const auto path = dir.path() / "x.bin";
    ct3::test::write_file(path, "hello world\n");
    EXPECT_EQ(ct3::sha256_file(path), ct3::sha256_hex("hello world\n"));
    try {
        ct3::sha256_file(dir.path() / "missing");
        FAIL() << "expected an error";
    } catch (const ct3::Error & e) {
        EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos);
    }
}

}  // namespace
