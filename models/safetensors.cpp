// safetensors reader (SafetensorsFile) and writer (save_safetensors); see safetensors.h for the format.
#include "models/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "models/error.h"
#include "models/close_names.h"
#include "models/strict_json.h"

namespace ct3 {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors stores little-endian bytes and the loader copies them verbatim");

namespace {

constexpr uint64_t max_header_bytes = 100u * 1000u * 1000u;  // the spec's cap (100 MB)

struct DtypeDesc {
    const char * name;
    size_t itemsize;
    std::optional<at::ScalarType> scalar;  // empty: the spec knows it, but we cannot load it
};

// The spec's dtypes with a byte size. Those without a torch type common to libtorch 1.13 and 2.x
// still validate (so a checkpoint carrying one opens) but throw `unsupported` when loaded.
const DtypeDesc dtype_table[] = {
    {"F64", 8, at::kDouble}, {"F32", 4, at::kFloat},  {"F16", 2, at::kHalf},       {"BF16", 2, at::kBFloat16},
    {"I64", 8, at::kLong},   {"I32", 4, at::kInt},    {"I16", 2, at::kShort},      {"I8", 1, at::kChar},
    {"U8", 1, at::kByte},    {"BOOL", 1, at::kBool},  {"U64", 8, std::nullopt},    {"U32", 4, std::nullopt},
    {"U16", 2, std::nullopt}, {"F8_E4M3", 1, std::nullopt}, {"F8_E5M2", 1, std::nullopt},
    {"C64", 8, std::nullopt},
};

const DtypeDesc * find_dtype(const std::string & name) {
    for (const auto & d : dtype_table) {
        if (name == d.name) return &d;
    }
    return nullptr;
}

const char * dtype_name_of(at::ScalarType scalar) {
    for (const auto & d : dtype_table) {
        if (d.scalar && *d.scalar == scalar) return d.name;
    }
    return nullptr;
}

// Reads one header entry; `file` and `name` only feed error messages.
TensorInfo parse_entry(const std::string & file, const std::string & name, const nlohmann::json & entry) {
    CT3_CHECK(entry.is_object(), ErrorKind::bad_format,
              "{}: header entry for tensor '{}' is JSON {} (expected an object)", file, name, entry.type_name());
    TensorInfo info;
    info.name = name;

    auto dtype_it = entry.find("dtype");
    CT3_CHECK(dtype_it != entry.end() && dtype_it->is_string(), ErrorKind::bad_format,
              "{}: tensor '{}' has no string field 'dtype'", file, name);
    info.dtype = dtype_it->get<std::string>();
    const DtypeDesc * dtype = find_dtype(info.dtype);
    CT3_CHECK(dtype != nullptr, ErrorKind::bad_format,
              "{}: tensor '{}' has unknown dtype '{}' (expected F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, ...)",
              file, name, info.dtype);

    auto shape_it = entry.find("shape");
    CT3_CHECK(shape_it != entry.end() && shape_it->is_array(), ErrorKind::bad_format,
              "{}: tensor '{}' has no list field 'shape'", file, name);
    // The byte size is computed with overflow checks: a hostile shape must not wrap around to a
    // byte count that happens to match the data range. Zero dims are skipped in the product so that
    // [0, 2^40, 2^40] is rejected too (torch would overflow computing strides for it).
    constexpr uint64_t max_bytes = uint64_t(std::numeric_limits<int64_t>::max());
    uint64_t n_bytes = dtype->itemsize;
    bool has_zero_dim = false;
    for (const auto & dim : *shape_it) {
        CT3_CHECK(dim.is_number_unsigned() && dim.get<uint64_t>() <= max_bytes, ErrorKind::bad_format,
                  "{}: tensor '{}' has shape {} (expected a list of non-negative integers)", file, name,
                  shape_it->dump());
        const uint64_t d = dim.get<uint64_t>();
        has_zero_dim = has_zero_dim || d == 0;
        if (d != 0 && n_bytes > max_bytes / d) {
            fail(ErrorKind::bad_format, "{}: tensor '{}' has shape {} whose byte size overflows 63 bits", file, name,
                 shape_it->dump());
        }
        n_bytes *= d == 0 ? 1 : d;
        info.shape.push_back(int64_t(d));
    }
    if (has_zero_dim) n_bytes = 0;

    auto offsets_it = entry.find("data_offsets");
    const bool offsets_ok = offsets_it != entry.end() && offsets_it->is_array() && offsets_it->size() == 2 &&
                            (*offsets_it)[0].is_number_unsigned() && (*offsets_it)[1].is_number_unsigned();
    CT3_CHECK(offsets_ok, ErrorKind::bad_format,
              "{}: tensor '{}' has data_offsets {} (expected [begin, end] as two non-negative integers)", file, name,
              offsets_it == entry.end() ? std::string("(missing)") : offsets_it->dump());
    info.begin = (*offsets_it)[0].get<uint64_t>();
    info.end = (*offsets_it)[1].get<uint64_t>();
    CT3_CHECK(info.begin <= info.end, ErrorKind::bad_format,
              "{}: tensor '{}' has data_offsets [{}, {}] with begin > end", file, name, info.begin, info.end);
    CT3_CHECK(info.end - info.begin == n_bytes, ErrorKind::bad_format,
              "{}: tensor '{}' ({} {}) needs {} bytes but data_offsets [{}, {}] span {}", file, name, info.dtype,
              shape_it->dump(), n_bytes, info.begin, info.end, info.end - info.begin);
    return info;
}

// The spec requires the ranges to tile the buffer exactly: no overlap, no gap, no trailing bytes.
void check_ranges(const std::string & file, std::vector<TensorInfo> & tensors, uint64_t buffer_size) {
    for (const auto & t : tensors) {
        CT3_CHECK(t.end <= buffer_size, ErrorKind::bad_format,
                  "{}: tensor '{}' has data_offsets [{}, {}] beyond the {}-byte data buffer", file, t.name, t.begin,
                  t.end, buffer_size);
    }
    std::vector<const TensorInfo *> order;
    for (const auto & t : tensors) order.push_back(&t);
    std::sort(order.begin(), order.end(), [](const TensorInfo * a, const TensorInfo * b) {
        return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    uint64_t covered = 0;
    const TensorInfo * prev = nullptr;
    for (const TensorInfo * t : order) {
        if (t->begin < covered) {
            fail(ErrorKind::bad_format, "{}: tensor '{}' [{}, {}] overlaps tensor '{}' [{}, {}]", file, t->name,
                 t->begin, t->end, prev->name, prev->begin, prev->end);
        }
        CT3_CHECK(t->begin == covered, ErrorKind::bad_format,
                  "{}: data buffer has a gap [{}, {}) before tensor '{}' (ranges must cover the buffer)", file, covered,
                  t->begin, t->name);
        covered = t->end;
        prev = t;
    }
    CT3_CHECK(covered == buffer_size, ErrorKind::bad_format,
              "{}: data buffer has {} trailing bytes after the last tensor (ranges must cover the buffer)", file,
              buffer_size - covered);
}

// Unmaps on scope exit unless released: open() validates before handing the mapping to the object.
struct Mapping {
    void * addr = MAP_FAILED;
    size_t size = 0;
    ~Mapping() {
        if (addr != MAP_FAILED) munmap(addr, size);
    }
};

void write_all(int fd, const void * data, size_t size, const std::string & path) {
    const auto * p = static_cast<const uint8_t *>(data);
    while (size > 0) {
        const ssize_t n = ::write(fd, p, std::min<size_t>(size, size_t(1) << 30));
        if (n < 0 && errno == EINTR) continue;
        CT3_CHECK(n > 0, ErrorKind::io, "cannot write {}: {}", path, std::strerror(errno));
        p += n;
        size -= size_t(n);
    }
}

}  // namespace

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::filesystem::path & path) {
    const std::string file = path.string();
    // O_NONBLOCK: opening a FIFO must not hang waiting for a writer (fstat then rejects it).
    const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    const int open_errno = errno;
    CT3_CHECK(fd >= 0, open_errno == ENOENT ? ErrorKind::not_found : ErrorKind::io, "cannot open {}: {}", file,
              std::strerror(open_errno));
    struct stat st {};
    const int stat_rc = ::fstat(fd, &st);
    const int stat_errno = errno;
    if (stat_rc != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        fail(ErrorKind::io, "cannot open {}: {}", file,
             stat_rc != 0 ? std::strerror(stat_errno) : "not a regular file");
    }
    const uint64_t file_size = uint64_t(st.st_size);
    if (file_size < 8) {
        ::close(fd);
        fail(ErrorKind::bad_format, "{}: file is {} bytes, too short for a safetensors header length (8 bytes)", file,
             file_size);
    }
    Mapping mapping;
    mapping.size = size_t(file_size);
    mapping.addr = ::mmap(nullptr, mapping.size, PROT_READ, MAP_PRIVATE, fd, 0);
    const int map_errno = errno;
    ::close(fd);  // the mapping keeps the file alive
    CT3_CHECK(mapping.addr != MAP_FAILED, ErrorKind::io, "cannot mmap {}: {}", file, std::strerror(map_errno));
    const auto * bytes = static_cast<const uint8_t *>(mapping.addr);

    uint64_t header_size = 0;
    std::memcpy(&header_size, bytes, 8);  // little-endian host (static_assert above)
    CT3_CHECK(header_size <= max_header_bytes, ErrorKind::bad_format,
              "{}: header length {} exceeds the 100 MB limit (not a safetensors file?)", file, header_size);
    CT3_CHECK(header_size <= file_size - 8, ErrorKind::bad_format,
              "{}: header length {} exceeds the {} bytes after the length field (truncated file?)", file, header_size,
              file_size - 8);

    const char * header_begin = reinterpret_cast<const char *>(bytes + 8);
    const nlohmann::json header = parse_strict_json(header_begin, header_begin + header_size, file + " header");
    CT3_CHECK(header.is_object(), ErrorKind::bad_format, "{}: header is a JSON {} (expected an object)", file,
              header.type_name());

    std::shared_ptr<SafetensorsFile> result(new SafetensorsFile());
    result->path_ = path;
    for (const auto & [key, value] : header.items()) {
        if (key == "__metadata__") {
            CT3_CHECK(value.is_object(), ErrorKind::bad_format, "{}: __metadata__ is JSON {} (expected an object)",
                      file, value.type_name());
            for (const auto & [mkey, mvalue] : value.items()) {
                CT3_CHECK(mvalue.is_string(), ErrorKind::bad_format,
                          "{}: __metadata__ value for '{}' is JSON {} (expected a string)", file, mkey,
                          mvalue.type_name());
                result->metadata_[mkey] = mvalue.get<std::string>();
            }
            continue;
        }
        result->tensors_.push_back(parse_entry(file, key, value));
    }
    check_ranges(file, result->tensors_, file_size - 8 - header_size);
    for (size_t i = 0; i < result->tensors_.size(); ++i) result->index_[result->tensors_[i].name] = i;

    result->map_ = bytes;
    result->map_size_ = mapping.size;
    result->data_start_ = size_t(8 + header_size);
    mapping.addr = MAP_FAILED;  // ownership moves to the object
    return result;
}

SafetensorsFile::~SafetensorsFile() {
    if (map_ != nullptr) ::munmap(const_cast<uint8_t *>(map_), map_size_);
}

bool SafetensorsFile::contains(const std::string & name) const { return index_.count(name) != 0; }

const TensorInfo & SafetensorsFile::info(const std::string & name) const {
    auto it = index_.find(name);
    if (it == index_.end()) {
        std::vector<std::string> names;
        for (const auto & t : tensors_) names.push_back(t.name);
        fail(ErrorKind::not_found, "tensor '{}' not found in {} ({} tensors{})", name, path_.string(), tensors_.size(),
             describe_close_names(name, names));
    }
    return tensors_[it->second];
}

at::Tensor SafetensorsFile::load(const std::string & name) const {
    const TensorInfo & t = info(name);
    const DtypeDesc * dtype = find_dtype(t.dtype);
    CT3_ASSERT(dtype != nullptr);  // validated by open()
    CT3_CHECK(dtype->scalar.has_value(), ErrorKind::unsupported, "{}: tensor '{}' has dtype {}, which ct3 cannot load",
              path_.string(), name, t.dtype);
    at::Tensor out = torch::empty(t.shape, torch::TensorOptions().dtype(*dtype->scalar));
    const uint8_t * src = map_ + data_start_ + t.begin;
    const size_t n_bytes = size_t(t.end - t.begin);
    if (*dtype->scalar == at::kBool) {
        // A bool byte other than 0/1 is undefined behaviour in torch; reject it instead of loading it.
        const bool valid = std::all_of(src, src + n_bytes, [](uint8_t b) { return b <= 1; });
        CT3_CHECK(valid, ErrorKind::bad_format, "{}: BOOL tensor '{}' holds bytes other than 0 and 1", path_.string(),
                  name);
    }
    if (n_bytes > 0) std::memcpy(out.data_ptr(), src, n_bytes);
    return out;
}

void save_safetensors(const std::filesystem::path & path,
                      const std::vector<std::pair<std::string, at::Tensor>> & tensors,
                      const std::map<std::string, std::string> & metadata) {
    const std::string file = path.string();
    std::vector<std::pair<std::string, at::Tensor>> sorted;
    sorted.reserve(tensors.size());
    for (const auto & [name, tensor] : tensors) {
        CT3_CHECK(name != "__metadata__", ErrorKind::invalid_argument,
                  "cannot save {}: '__metadata__' is reserved and cannot name a tensor", file);
        CT3_CHECK(tensor.defined(), ErrorKind::invalid_argument, "cannot save {}: tensor '{}' is undefined", file,
                  name);
        CT3_CHECK(tensor.layout() == torch::kStrided, ErrorKind::invalid_argument,
                  "cannot save {}: tensor '{}' is sparse (convert it with to_dense() first)", file, name);
        CT3_CHECK(dtype_name_of(tensor.scalar_type()) != nullptr, ErrorKind::unsupported,
                  "cannot save {}: tensor '{}' has dtype {} (expected one of F64, F32, F16, BF16, I64, I32, I16, I8, "
                  "U8, BOOL)",
                  file, name, c10::toString(tensor.scalar_type()));
        sorted.emplace_back(name, tensor.detach().to(torch::kCPU).contiguous());
    }
    std::sort(sorted.begin(), sorted.end(), [](const auto & a, const auto & b) { return a.first < b.first; });
    for (size_t i = 1; i < sorted.size(); ++i) {
        CT3_CHECK(sorted[i].first != sorted[i - 1].first, ErrorKind::invalid_argument,
                  "cannot save {}: tensor name '{}' appears twice", file, sorted[i].first);
    }

    // ordered_json keeps __metadata__ first and the tensors in name order, as HF writes them.
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t offset = 0;
    for (const auto & [name, tensor] : sorted) {
        const uint64_t n_bytes = uint64_t(tensor.numel()) * tensor.element_size();
        header[name] = {{"dtype", dtype_name_of(tensor.scalar_type())},
                        {"shape", tensor.sizes().vec()},
                        {"data_offsets", {offset, offset + n_bytes}}};
        offset += n_bytes;
    }
    std::string header_text = header.dump();
    // Pad with spaces (valid JSON whitespace) so that the data buffer starts 8-byte aligned.
    header_text.append((8 - header_text.size() % 8) % 8, ' ');
    const uint64_t header_size = header_text.size();

    const std::string tmp = file + ".tmp." + std::to_string(::getpid());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CT3_CHECK(fd >= 0, ErrorKind::io, "cannot create {}: {}", tmp, std::strerror(errno));
    bool closed = false;
    try {
        write_all(fd, &header_size, 8, tmp);
        write_all(fd, header_text.data(), header_text.size(), tmp);
        for (const auto & [name, tensor] : sorted) {
            write_all(fd, tensor.data_ptr(), size_t(tensor.numel()) * tensor.element_size(), tmp);
        }
        // fsync before rename: otherwise a crash can leave the new name pointing at an empty file.
        CT3_CHECK(::fsync(fd) == 0, ErrorKind::io, "cannot fsync {}: {}", tmp, std::strerror(errno));
        closed = true;  // close() releases the descriptor even when it reports an error
        CT3_CHECK(::close(fd) == 0, ErrorKind::io, "cannot close {}: {}", tmp, std::strerror(errno));
    } catch (...) {
        if (!closed) ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    if (::rename(tmp.c_str(), file.c_str()) != 0) {
        const int err = errno;
        ::unlink(tmp.c_str());
        fail(ErrorKind::io, "cannot rename {} to {}: {}", tmp, file, std::strerror(err));
    }
}

}  // namespace ct3
