// The `{field}` template engine (kb/text_template.h) and the record streamer (kb/json_records.h):
// JSON arrays split by the byte scanner must give exactly what a full parse gives.
#include <gtest/gtest.h>

#include "kb/json_records.h"
#include "kb/text_template.h"
#include "models/error.h"
#include "tests/test_support.h"

namespace {

namespace fs = std::filesystem;
using ct3::Error;
using ct3::ErrorKind;
using ct3::kb::JsonRecord;
using ct3::kb::TextTemplate;
using json = nlohmann::json;

template <typename Fn>
std::string error_text(Fn && fn, ErrorKind expected_kind) {
    try {
        fn();
    } catch (const Error & e) {
        EXPECT_EQ(e.kind(), expected_kind) << e.what();
        return std::string(e.what()) + " | hint: " + e.hint();
    }
    ADD_FAILURE() << "expected a ct3::Error";
    return {};
}

const json kRecord = json::parse(R"({
    "question": "2+2?", "answer": "4", "n": 7, "x": 2.5, "big": 10000000000, "neg": -3, "flag": false,
    "meta": {"source": {"name": "gsm"}, "tags": ["easy", "arith"]},
    "answers": ["four", "4"], "grid": [[1, 2], [3, 4]], "none": null, "obj": {"a": 1}
})");

TEST(KbTextTemplate, FieldsNestedIndexEscapesNumbers) {
    EXPECT_EQ(TextTemplate("{question} {answer}").render(kRecord, "r"), "2+2? 4");
    EXPECT_EQ(TextTemplate("Q: {question}\nA: {answers[0]}").render(kRecord, "r"), "Q: 2+2?\nA: four");
    EXPECT_EQ(TextTemplate("{meta.source.name}/{meta.tags[1]}").render(kRecord, "r"), "gsm/arith");
    EXPECT_EQ(TextTemplate("{grid[1][0]}").render(kRecord, "r"), "3");
    EXPECT_EQ(TextTemplate("{n} {x} {big} {neg} {flag}").render(kRecord, "r"), "7 2.5 10000000000 -3 false");
    EXPECT_EQ(TextTemplate("{{literal}} {{{answer}}} }}").render(kRecord, "r"), "{literal} {4} }");
    EXPECT_EQ(TextTemplate("no fields").render(kRecord, "r"), "no fields");
    EXPECT_EQ(TextTemplate("").render(kRecord, "r"), "");
    EXPECT_EQ(TextTemplate("{question}{answer}").fields(), (std::vector<std::string>{"question", "answer"}));
}

TEST(KbTextTemplate, UnknownFieldNamesTemplateFieldAndWhere) {
    const std::string text = error_text([] { TextTemplate("{question} {anser}").render(kRecord, "data.jsonl line 4 (record 3)"); },
                                        ErrorKind::bad_format);
    for (const char * part : {"data.jsonl line 4 (record 3)", "template '{question} {anser}'", "field 'anser'", "'answer'"})
        EXPECT_NE(text.find(part), std::string::npos) << part << " not in: " << text;
    const std::string nested = error_text([] { TextTemplate("{meta.source.title}").render(kRecord, "f"); }, ErrorKind::bad_format);
    EXPECT_NE(nested.find("no key 'title'"), std::string::npos) << nested;
    EXPECT_NE(nested.find("'name'"), std::string::npos) << nested;
}

TEST(KbTextTemplate, RejectsNonObjectsNullArraysAndBadPaths) {
    EXPECT_NE(error_text([] { TextTemplate("{a}").render(json::array({1, 2}), "f.json record 2"); }, ErrorKind::bad_format)
                  .find("f.json record 2: record is an array"),
              std::string::npos);
    EXPECT_NE(error_text([] { TextTemplate("{a}").render(json("text"), "f"); }, ErrorKind::bad_format).find("a string"),
              std::string::npos);
    EXPECT_NE(error_text([] { TextTemplate("{answers}").render(kRecord, "f"); }, ErrorKind::bad_format).find("is an array"),
              std::string::npos);
    EXPECT_NE(error_text([] { TextTemplate("{obj}").render(kRecord, "f"); }, ErrorKind::bad_format).find("is an object"),
              std::string::npos);
    EXPECT_NE(error_text([] { TextTemplate("{none}").render(kRecord, "f"); }, ErrorKind::bad_format).find("is null"),
              std::string::npos);
    EXPECT_NE(error_text([] { TextTemplate("{answers[2]}").render(kRecord, "f"); }, ErrorKind::bad_format).find("out of range"),
              std::string::npos);
    EXPECT_NE(error_text([] { TextTemplate("{question[0]}").render(kRecord, "f"); }, ErrorKind::bad_format).find("not an array"),
              std::string::npos);
    EXPECT_NE(error_text([] { TextTemplate("{n.value}").render(kRecord, "f"); }, ErrorKind::bad_format).find("not an object"),
              std::string::npos);
}

TEST(KbTextTemplate, MalformedTemplatesFailAtParse) {
    for (const char * bad : {"{question", "question}", "{}", "{a..b}", "{.a}", "{a.}", "{a[x]}", "{a[]}", "{a[1}", "{a{b}}"}) {
        const std::string text = error_text([&] { TextTemplate t(bad); }, ErrorKind::invalid_argument);
        EXPECT_NE(text.find(std::string("template '") + bad + "'"), std::string::npos) << text;
    }
}

// ---------------------------------------------------------------------------------------------
// record streaming

std::vector<JsonRecord> records_of(const fs::path & path) {
    std::vector<JsonRecord> out;
    ct3::kb::for_each_json_record(path, [&](JsonRecord && r) {
        out.push_back(std::move(r));
        return true;
    });
    return out;
}

TEST(KbJsonRecords, ArrayScannerMatchesAFullParse) {
    ct3::test::TempDir dir;
    const fs::path file = dir.path() / "tricky.json";
    // Brackets, braces, commas and escaped quotes inside strings; nested arrays; scalars; a BOM.
    const std::string body = R"( [ {"s": "a ] } , [ \" \\", "t": [[1, {"u": "}"}], []]},
        "plain \"string\" ]", 12.5e1 , -7,true,null, {"k": "\u00e9\ud83d\ude00"}, [] ] )";
    ct3::test::write_file(file, "\xEF\xBB\xBF" + body);
    const auto records = records_of(file);
    const json expected = json::parse(body);
    ASSERT_EQ(records.size(), expected.size());
    for (size_t i = 0; i < records.size(); ++i) {
        EXPECT_EQ(records[i].row, int64_t(i));
        EXPECT_EQ(records[i].line, 0);
        EXPECT_EQ(records[i].value, expected[i]) << i;
    }
    EXPECT_EQ(records[0].offset, 3 + 3);  // after the BOM and " [ "
    EXPECT_TRUE(records_of([&] {
                    ct3::test::write_file(dir.path() / "empty.json", " [ ] \n");
                    return dir.path() / "empty.json";
                }())
                    .empty());
}

TEST(KbJsonRecords, MalformedArraysNameFileAndOffset) {
    ct3::test::TempDir dir;
    auto check = [&](const std::string & body, const std::string & needle) {
        const fs::path file = dir.path() / "bad.json";
        ct3::test::write_file(file, body);
        const std::string text = error_text([&] { records_of(file); }, ErrorKind::bad_format);
        EXPECT_NE(text.find("bad.json"), std::string::npos) << text;
        EXPECT_NE(text.find(needle), std::string::npos) << needle << " not in: " << text;
    };
    check(R"([{"a": 1},])", "trailing ','");
    check(R"([{"a": 1} {"b": 2}])", "expected ',' or ']' after record 0 at byte offset 10");
    check(R"([{"a": 1}, {"b": 2})", "not closed");
    check(R"([{"a": 1}, {"b": 2)", "inside record 1");
    check(R"([{"a": 1}] x)", "after the closing ']'");
    check(R"([{"a": 1}, {"b": }])", "record 1 (byte offset 11)");
    check(R"([{"a": 1, "a": 2}])", "duplicate JSON key 'a'");
}

TEST(KbJsonRecords, JsonLinesCountsRecordsAndLinesSeparately) {
    ct3::test::TempDir dir;
    const fs::path file = dir.path() / "rows.json";  // JSON Lines under a .json name (pandas exports)
    ct3::test::write_file(file, "\n{\"a\": 1}\r\n   \n{\"a\": 2}\n{\"a\": 3}");
    const auto records = records_of(file);
    ASSERT_EQ(records.size(), 3u);
    EXPECT_EQ(records[1].row, 1);
    EXPECT_EQ(records[1].line, 4);
    EXPECT_EQ(records[1].value["a"], 2);
    EXPECT_EQ(records[2].line, 5);  // no trailing newline
    EXPECT_EQ(ct3::kb::record_location(file, records[1]), file.string() + " line 4 (record 1)");

    int seen = 0;
    ct3::kb::for_each_json_record(file, [&](JsonRecord &&) { return ++seen < 2; });
    EXPECT_EQ(seen, 2);

    EXPECT_NE(error_text([&] { records_of(dir.path() / "absent.jsonl"); }, ErrorKind::not_found).find("absent.jsonl"),
              std::string::npos);
}

}  // namespace
