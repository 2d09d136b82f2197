// AdapterCache with --adapter_cache_dir: round trip of entries, tensors and counts, eviction deleting
// folders, incompatible and corrupt files, trimming to capacity, the folder lock, concurrent inserts.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "tests/client_adapter_cache_fixture.h"
#include "tests/test_support.h"

using namespace ct3::client;
using namespace ct3::test::adapter_cache;

TEST(AdapterCachePersist, RoundTripKeepsTensorsCountsAndScores) {
    ct3::test::TempDir tmp;
    const at::Tensor query = torch::tensor({0.9f, 0.3f, 0.1f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f});
    double score_before = 0.0;
    {
        AdapterCache cache(persisted(tmp.path()));
        for (int i = 0; i < 3; ++i) insert_basis(cache, i);
        hit(cache, 0), hit(cache, 0), hit(cache, 2);
        score_before = cache.lookup(query)->score;  // q0 again: uses {3, 0, 1}
    }  // the destructor writes the hit counts
    const nlohmann::json index = nlohmann::json::parse(ct3::test::read_file(tmp.path() / "index.json"));
    EXPECT_EQ(index["version"], 1);
    EXPECT_EQ(index["strategy"], "lfu");
    ASSERT_EQ(index["entries"].size(), 3u);
    for (const auto & e : index["entries"]) {
        EXPECT_TRUE(fs::is_regular_file(tmp.path() / e["dir"].get<std::string>() / "adapter_model.safetensors"));
        EXPECT_EQ(ct3::test::read_file(tmp.path() / e["dir"].get<std::string>() / "adapter_config.json"), config_r8);
    }
    AdapterCache reloaded(persisted(tmp.path()));
    EXPECT_EQ(queries(reloaded), (std::vector<std::string>{"q0", "q1", "q2"}));
    EXPECT_EQ(uses(reloaded), (std::vector<uint64_t>{3, 0, 1}));
    auto r = reloaded.lookup(query);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->query, "q0");
    EXPECT_EQ(r->score, score_before);  // keys round-trip bit for bit
    auto expected = make_adapter(0);
    ASSERT_EQ(r->adapter->size(), 2u);
    for (const auto & [name, tensor] : *expected) {
        auto it = std::find_if(r->adapter->begin(), r->adapter->end(), [&](const auto & p) { return p.first == name; });
        ASSERT_NE(it, r->adapter->end()) << name;
        EXPECT_EQ(it->second.scalar_type(), torch::kFloat);
        EXPECT_TRUE(torch::equal(it->second, tensor)) << name;
    }
    // LFU continues from the persisted counts: q1 (0 uses) is the victim.
    EXPECT_EQ(reloaded.insert("q3", basis(3), make_adapter(3)), std::nullopt);
    EXPECT_EQ(reloaded.insert("q4", basis(4), make_adapter(4)), std::optional<std::string>("q1"));
}

TEST(AdapterCachePersist, EvictionDeletesTheFolder) {
    ct3::test::TempDir tmp;
    AdapterCache cache(persisted(tmp.path(), 2));
    insert_basis(cache, 0), insert_basis(cache, 1);
    const std::string dir0 = cache.entries()[0].dir;
    const std::string dir1 = cache.entries()[1].dir;
    ASSERT_FALSE(dir0.empty());
    ASSERT_TRUE(fs::is_directory(tmp.path() / dir0));
    EXPECT_EQ(cache.insert("q2", basis(2), make_adapter(2)), std::optional<std::string>("q0"));
    EXPECT_FALSE(fs::exists(tmp.path() / dir0));
    EXPECT_TRUE(fs::is_directory(tmp.path() / dir1));
    const auto index = nlohmann::json::parse(ct3::test::read_file(tmp.path() / "index.json"));
    ASSERT_EQ(index["entries"].size(), 2u);
    EXPECT_EQ(index["entries"][0]["dir"], dir1);
    cache.clear();
    EXPECT_FALSE(fs::exists(tmp.path() / dir1));
    EXPECT_EQ(nlohmann::json::parse(ct3::test::read_file(tmp.path() / "index.json"))["entries"].size(), 0u);
}

TEST(AdapterCachePersist, IncompatibleConfigIsSkippedAndKept) {
    ct3::test::TempDir tmp;
    {
        AdapterCache cache(persisted(tmp.path()));
        insert_basis(cache, 0), insert_basis(cache, 1);
    }
    const std::string config_r16 = R"({"peft_type":"LORA","r":16,"lora_alpha":16,"target_modules":["q_proj","v_proj"]})";
    {
        LogCapture log;
        AdapterCache other(persisted(tmp.path(), 4, config_r16));
        EXPECT_EQ(other.size(), 0u);
        EXPECT_NE(log.text().find("differs from this run's adapter config"), std::string::npos) << log.text();
        EXPECT_NE(log.text().find((tmp.path() / "entry-000001" / "adapter_config.json").string()), std::string::npos)
            << log.text();
        other.insert("r16", basis(5), make_adapter(5));
    }
    // Same config with another key order and spacing: compatible (compared as parsed JSON).
    const std::string reordered = R"({ "r": 8, "target_modules": ["q_proj", "v_proj"], "lora_alpha": 16, "peft_type": "LORA" })";
    {
        AdapterCache back(persisted(tmp.path(), 4, reordered));
        EXPECT_EQ(queries(back), (std::vector<std::string>{"q0", "q1"}));
    }
    EXPECT_EQ(nlohmann::json::parse(ct3::test::read_file(tmp.path() / "index.json"))["entries"].size(), 3u);
    if (!torch::cuda::is_available()) {  // a device that fails keeps the entries on disk
        AdapterCacheOptions o = persisted(tmp.path());
        o.device = "cuda";
        AdapterCache gpu(o);
        EXPECT_EQ(gpu.size(), 0u);
        gpu.insert("cpu-only", basis(6), make_adapter(6));
    }
    EXPECT_EQ(nlohmann::json::parse(ct3::test::read_file(tmp.path() / "index.json"))["entries"].size(), 4u);
}

TEST(AdapterCachePersist, CorruptFilesNeverCrash) {
    ct3::test::TempDir tmp;
    ct3::test::write_file(tmp.path() / "index.json", "{\"version\":1,\"entries\":[");
    {
        LogCapture log;
        AdapterCache cache(persisted(tmp.path()));
        EXPECT_EQ(cache.size(), 0u);
        EXPECT_NE(log.text().find((tmp.path() / "index.json").string()), std::string::npos) << log.text();
    }
    EXPECT_EQ(ct3::test::read_file(tmp.path() / "index.json"), "{\"version\":1,\"entries\":[");  // untouched
    {
        AdapterCache cache(persisted(tmp.path()));
        for (int i = 0; i < 3; ++i) insert_basis(cache, i);
    }
    // Break entry 1's weights, point entry 2 outside the folder; entry 0 still loads.
    auto index = nlohmann::json::parse(ct3::test::read_file(tmp.path() / "index.json"));
    const std::string dir1 = index["entries"][1]["dir"];
    ct3::test::write_file(tmp.path() / dir1 / "adapter_model.safetensors", "garbage");
    fs::create_directory(tmp.path() / "victim");
    index["entries"][2]["dir"] = "../victim";
    ct3::test::write_file(tmp.path() / "index.json", index.dump());
    {
        LogCapture log;
        AdapterCache cache(persisted(tmp.path(), 1));
        EXPECT_EQ(queries(cache), (std::vector<std::string>{"q0"}));
        EXPECT_NE(log.text().find(dir1), std::string::npos) << log.text();
        EXPECT_NE(log.text().find("../victim"), std::string::npos) << log.text();
        cache.insert("q9", basis(7), make_adapter(9));  // evicts q0
    }
    EXPECT_TRUE(fs::is_directory(tmp.path() / "victim"));
    EXPECT_TRUE(fs::exists(tmp.path() / dir1));  // corrupt entries are dropped from the index, files kept
    EXPECT_EQ(nlohmann::json::parse(ct3::test::read_file(tmp.path() / "index.json"))["entries"].size(), 1u);
}

TEST(AdapterCachePersist, MoreEntriesThanCapacityAreTrimmedByStrategy) {
    ct3::test::TempDir tmp;
    std::vector<std::string> dirs;
    {
        AdapterCache cache(persisted(tmp.path(), 3));
        for (int i = 0; i < 3; ++i) insert_basis(cache, i);
        hit(cache, 0), hit(cache, 2), hit(cache, 2);  // uses {1, 0, 2}
        for (const auto & e : cache.entries()) dirs.push_back(e.dir);
    }
    AdapterCache small(persisted(tmp.path(), 2));
    EXPECT_EQ(queries(small), (std::vector<std::string>{"q0", "q2"}));
    EXPECT_TRUE(fs::exists(tmp.path() / dirs[1]));  // loading alone deletes nothing
    small.insert("q3", basis(3), make_adapter(3));  // evicts q0 (1 use < 2)
    EXPECT_FALSE(fs::exists(tmp.path() / dirs[1]));
    EXPECT_FALSE(fs::exists(tmp.path() / dirs[0]));
    EXPECT_EQ(queries(small), (std::vector<std::string>{"q2", "q3"}));
}

TEST(AdapterCachePersist, FolderIsLockedWhileInUse) {
    ct3::test::TempDir tmp;
    AdapterCache first(persisted(tmp.path()));
    EXPECT_EQ(kind_of([&] { AdapterCache second(persisted(tmp.path())); }), ct3::ErrorKind::unavailable);
}

TEST(AdapterCacheConcurrency, PersistedFoldersMatchTheIndex) {
    ct3::test::TempDir tmp;
    {
        AdapterCache cache(persisted(tmp.path(), 3));
        hammer(cache, 4, 12);
    }
    const auto index = nlohmann::json::parse(ct3::test::read_file(tmp.path() / "index.json"));
    size_t folders = 0;
    for (const auto & item : fs::directory_iterator(tmp.path())) folders += item.is_directory() ? 1 : 0;
    EXPECT_EQ(folders, index["entries"].size());  // no orphans, nothing missing
    AdapterCache reloaded(persisted(tmp.path(), 3));
    EXPECT_EQ(reloaded.size(), index["entries"].size());
}
