// A minimal FlatBuffers reader with a bounds check on every offset, and a small builder (catq's own code; the wire
// format is the public FlatBuffers binary format, https://flatbuffers.dev/internals/).
//
// Wire format (all little-endian):
//   buffer start   uint32 uoffset to the root table (relative to byte 0); bytes 4..7 an optional file identifier
//   table at t     int32 soffset: the vtable lies at t - soffset; then the table's inline fields
//   vtable at v    uint16 vtable size in bytes, uint16 table inline size, then one uint16 per field id: the field's
//                  offset from t (0 = field absent: the schema default applies)
//   reference      a field holding a table / vector / string is a uint32 uoffset relative to the field's own position
//   vector at p    uint32 length, then the elements; a vector of tables or strings holds uoffsets (relative to each
//                  element's position)
//   string at p    uint32 length, the bytes, a terminating 0
//   union          two fields: a uint8 type (field id k) and a reference to the table (field id k + 1)
//
// Every read that would leave the buffer, a vtable that does not fit, or a field that does not fit inside its table
// is Error(Format) naming the file, what was being read and the offset. The reader never follows a reference
// backwards (uoffsets are unsigned), so a malformed file cannot make it loop.
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

namespace catq {

class FbVector;

// A view of a whole FlatBuffer (not owned).
struct FbBuffer {
  const uint8_t* data = nullptr;
  size_t size = 0;
  std::string name;  // the file, for messages

  [[noreturn]] void malformed(const std::string& what, uint64_t offset, const std::string& problem) const;
  // Checks that [offset, offset + bytes) lies inside the buffer.
  void need(uint64_t offset, uint64_t bytes, const std::string& what) const {
    if (offset > size || bytes > size - offset)
      malformed(what, offset, fmt::format("{} bytes needed but the buffer ends at {}", bytes, size));
  }
  template <typename T>
  T load(uint64_t offset, const std::string& what) const {
    need(offset, sizeof(T), what);
    T v;
    std::memcpy(&v, data + offset, sizeof(T));
    return v;
  }
  // The target of the uoffset stored at `at`.
  uint64_t follow(uint64_t at, const std::string& what) const {
    const uint64_t target = at + load<uint32_t>(at, what);
    need(target, 4, what);
    return target;
  }
};

class FbTable {
 public:
  FbTable(const FbBuffer* buf, uint64_t pos, std::string what);
  // The root table of a buffer; `identifier` (4 chars) is checked when non-empty.
  static FbTable root(const FbBuffer& buf, const std::string& identifier, const std::string& what);

  bool has(int field) const { return field_offset(field) != 0; }
  template <typename T>
  T scalar(int field, T def) const {
    const uint16_t off = field_offset(field);
    if (off == 0) return def;
    check_inline(off, sizeof(T), field);
    return buf_->load<T>(pos_ + off, field_name(field));
  }
  std::optional<FbTable> table(int field, const std::string& what) const;
  std::optional<FbVector> vector(int field, size_t elem_size, const std::string& what) const;
  std::string string(int field, const std::string& what) const;  // "" when absent
  // A vector of scalars as std::vector<T> (empty when absent).
  template <typename T>
  std::vector<T> scalars(int field, const std::string& what) const;

  uint64_t pos() const { return pos_; }
  const std::string& what() const { return what_; }
  const FbBuffer& buffer() const { return *buf_; }

 private:
  uint16_t field_offset(int field) const;
  void check_inline(uint16_t off, size_t bytes, int field) const;
  std::string field_name(int field) const { return fmt::format("{} field {}", what_, field); }
  const FbBuffer* buf_;
  uint64_t pos_, vtable_;
  uint16_t vtable_size_, inline_size_;
  std::string what_;
};

class FbVector {
 public:
  FbVector(const FbBuffer* buf, uint64_t pos, size_t elem_size, const std::string& what);
  size_t size() const { return len_; }
  // Element i as a scalar.
  template <typename T>
  T at(size_t i) const {
    return buf_->load<T>(first_ + i * elem_, what_);
  }
  FbTable table(size_t i, const std::string& what) const;
  std::string string(size_t i, const std::string& what) const;
  const uint8_t* bytes() const { return buf_->data + first_; }
  size_t byte_size() const { return len_ * elem_; }

 private:
  const FbBuffer* buf_;
  uint64_t first_;
  size_t len_, elem_;
  std::string what_;
};

template <typename T>
std::vector<T> FbTable::scalars(int field, const std::string& what) const {
  std::vector<T> out;
  if (auto v = vector(field, sizeof(T), what)) {
    out.resize(v->size());
    if (!out.empty()) std::memcpy(out.data(), v->bytes(), v->byte_size());
  }
  return out;
}

// Builds a FlatBuffer as a tree of nodes, then lays it out front to back: every object is written before the
// objects it refers to, so every reference points forward (a uoffset is unsigned), and every table's vtable is written
// just before the table (no vtable sharing: the files stay small anyway). Scalars are aligned to their size from the
// buffer start; vectors to their element size or a given alignment (TFLite's buffer data: 16).
struct FbNode {
  enum class Kind { Table, String, Scalars, Refs };
  Kind kind = Kind::Table;
  struct Field {
    int id = 0;
    std::vector<uint8_t> bytes;  // a scalar's little-endian bytes (empty for a reference)
    std::shared_ptr<FbNode> ref;
  };
  std::vector<Field> fields;                   // Table
  std::vector<uint8_t> data;                   // String (without the 0), Scalars
  size_t elem_size = 1, align = 1;             // Scalars
  std::vector<std::shared_ptr<FbNode>> items;  // Refs (tables or strings)

  template <typename T>
  FbNode& scalar(int id, T v) {
    Field f;
    f.id = id;
    f.bytes.resize(sizeof(T));
    std::memcpy(f.bytes.data(), &v, sizeof(T));
    fields.push_back(std::move(f));
    return *this;
  }
  FbNode& ref(int id, std::shared_ptr<FbNode> n) {
    if (n) fields.push_back({id, {}, std::move(n)});
    return *this;
  }
};
using FbNodePtr = std::shared_ptr<FbNode>;

FbNodePtr fb_table();
FbNodePtr fb_string(const std::string& s);
FbNodePtr fb_bytes(const void* data, size_t count, size_t elem_size, size_t align);
template <typename T>
FbNodePtr fb_vector(const std::vector<T>& v, size_t align = sizeof(T)) {
  return fb_bytes(v.data(), v.size(), sizeof(T), align < sizeof(T) ? sizeof(T) : align);
}
FbNodePtr fb_refs(std::vector<FbNodePtr> items);
// The finished buffer: root uoffset, the 4-byte identifier (when not empty), then the tree.
std::vector<uint8_t> fb_finish(const FbNodePtr& root, const std::string& identifier);

}  // namespace catq
