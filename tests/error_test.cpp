#include "models/error.h"
#include "models/log.h"
#include "tests/test_support.h"

TEST(Error, FormatsKindMessageAndHint) {
    try {
        ct3::fail_hint(ct3::ErrorKind::not_found, "pass --model_path", "tensor '{}' missing in {}", "w", "f.safetensors");
        FAIL() << "expected throw";
    } catch (const ct3::Error & e) {
        EXPECT_EQ(e.kind(), ct3::ErrorKind::not_found);
        EXPECT_EQ(e.message(), "tensor 'w' missing in f.safetensors");
        EXPECT_STREQ(e.what(), "tensor 'w' missing in f.safetensors (hint: pass --model_path)");
    }
}

TEST(Error, CheckThrowsOnlyWhenFalse) {
    EXPECT_NO_THROW(CT3_CHECK(1 + 1 == 2, ct3::ErrorKind::internal, "never"));
    EXPECT_THROW(CT3_CHECK(false, ct3::ErrorKind::invalid_argument, "k={} must be > 0", -1), ct3::Error);
}

TEST(Log, ParsesLevelsAndRejectsUnknown) {
    EXPECT_EQ(ct3::log_level_from_string("debug", "--log-level"), spdlog::level::debug);
    EXPECT_EQ(ct3::log_level_from_string("warning", "--log-level"), spdlog::level::warn);
    try {
        ct3::log_level_from_string("loud", "CT3_LOG_LEVEL");
        FAIL();
    } catch (const ct3::Error & e) {
        EXPECT_NE(std::string(e.what()).find("CT3_LOG_LEVEL"), std::string::npos);
    }
}
