#include "io/flatbuf.h"

#include <algorithm>
#include <cctype>

namespace catq {

void FbBuffer::malformed(const std::string& what, uint64_t offset, const std::string& problem) const {
  fail(ErrorKind::Format, "{}: malformed FlatBuffer: {} at byte offset {}: {}", name, what, offset, problem);
}

FbTable::FbTable(const FbBuffer* buf, uint64_t pos, std::string what) : buf_(buf), pos_(pos), what_(std::move(what)) {
  const int32_t soff = buf_->load<int32_t>(pos_, what_ + " (vtable offset)");
  const int64_t vt = static_cast<int64_t>(pos_) - soff;
  if (vt < 0 || static_cast<uint64_t>(vt) + 4 > buf_->size)
    buf_->malformed(what_, pos_, fmt::format("its vtable offset {} points outside the buffer", soff));
  vtable_ = static_cast<uint64_t>(vt);
  vtable_size_ = buf_->load<uint16_t>(vtable_, what_ + " (vtable size)");
  inline_size_ = buf_->load<uint16_t>(vtable_ + 2, what_ + " (table size)");
  if (vtable_size_ < 4 || vtable_size_ % 2 != 0)
    buf_->malformed(what_, vtable_, fmt::format("vtable size {} is not an even number >= 4", vtable_size_));
  buf_->need(vtable_, vtable_size_, what_ + " (vtable)");
  if (inline_size_ < 4) buf_->malformed(what_, pos_, fmt::format("table size {} is below 4", inline_size_));
  buf_->need(pos_, inline_size_, what_ + " (table)");
}

FbTable FbTable::root(const FbBuffer& buf, const std::string& identifier, const std::string& what) {
  if (buf.size < 8) buf.malformed(what, 0, fmt::format("the file has {} bytes, too few for a FlatBuffer", buf.size));
  if (!identifier.empty() && std::memcmp(buf.data + 4, identifier.data(), 4) != 0) {
    std::string got;
    for (int i = 4; i < 8; ++i) got += std::isprint(buf.data[i]) ? static_cast<char>(buf.data[i]) : '?';
    fail(ErrorKind::Format, "{}: not a {} file: bytes 4..7 are '{}', expected the identifier '{}'", buf.name, what, got,
         identifier);
  }
  return FbTable(&buf, buf.follow(0, what + " (root offset)"), what);
}

uint16_t FbTable::field_offset(int field) const {
  const uint64_t slot = 4 + 2 * static_cast<uint64_t>(field);
  if (slot + 2 > vtable_size_) return 0;  // fields beyond the vtable are absent (an older writer)
  return buf_->load<uint16_t>(vtable_ + slot, field_name(field));
}

void FbTable::check_inline(uint16_t off, size_t bytes, int field) const {
  if (off < 4 || off + bytes > inline_size_)
    buf_->malformed(field_name(field), pos_ + off,
                    fmt::format("field of {} bytes at offset {} does not fit in the table of {} bytes", bytes, off,
                                inline_size_));
}

std::optional<FbTable> FbTable::table(int field, const std::string& what) const {
  const uint16_t off = field_offset(field);
  if (off == 0) return std::nullopt;
  check_inline(off, 4, field);
  return FbTable(buf_, buf_->follow(pos_ + off, what), what);
}

std::optional<FbVector> FbTable::vector(int field, size_t elem_size, const std::string& what) const {
  const uint16_t off = field_offset(field);
  if (off == 0) return std::nullopt;
  check_inline(off, 4, field);
  return FbVector(buf_, buf_->follow(pos_ + off, what), elem_size, what);
}

std::string FbTable::string(int field, const std::string& what) const {
  auto v = vector(field, 1, what);
  if (!v) return {};
  return std::string(reinterpret_cast<const char*>(v->bytes()), v->size());
}

FbVector::FbVector(const FbBuffer* buf, uint64_t pos, size_t elem_size, const std::string& what)
    : buf_(buf), first_(pos + 4), elem_(elem_size), what_(what) {
  const uint32_t len = buf_->load<uint32_t>(pos, what + " (vector length)");
  if (elem_size != 0 && len > (buf_->size - std::min<uint64_t>(first_, buf_->size)) / elem_size)
    buf_->malformed(what, pos, fmt::format("vector of {} elements of {} bytes does not fit in the buffer ({} bytes)",
                                           len, elem_size, buf_->size));
  len_ = len;
}

FbTable FbVector::table(size_t i, const std::string& what) const {
  return FbTable(buf_, buf_->follow(first_ + 4 * i, what), what);
}

std::string FbVector::string(size_t i, const std::string& what) const {
  FbVector s(buf_, buf_->follow(first_ + 4 * i, what), 1, what);
  return std::string(reinterpret_cast<const char*>(s.bytes()), s.size());
}

// ---- builder ----

FbNodePtr fb_table() { return std::make_shared<FbNode>(); }

FbNodePtr fb_string(const std::string& s) {
  auto n = std::make_shared<FbNode>();
  n->kind = FbNode::Kind::String;
  n->data.assign(s.begin(), s.end());
  return n;
}

FbNodePtr fb_bytes(const void* data, size_t count, size_t elem_size, size_t align) {
  auto n = std::make_shared<FbNode>();
  n->kind = FbNode::Kind::Scalars;
  n->elem_size = elem_size;
  n->align = std::max<size_t>(align, 1);
  n->data.resize(count * elem_size);
  if (!n->data.empty()) std::memcpy(n->data.data(), data, n->data.size());
  return n;
}

FbNodePtr fb_refs(std::vector<FbNodePtr> items) {
  auto n = std::make_shared<FbNode>();
  n->kind = FbNode::Kind::Refs;
  n->items = std::move(items);
  return n;
}

namespace {

struct Layout {
  std::vector<uint8_t> out;

  void pad_to(size_t a) {
    while (out.size() % a) out.push_back(0);
  }
  void put_u32(size_t at, uint32_t v) { std::memcpy(out.data() + at, &v, 4); }
  void append(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    out.insert(out.end(), b, b + n);
  }
  // Writes node n and everything it refers to; returns n's position.
  size_t write(const FbNode& n) {
    switch (n.kind) {
      case FbNode::Kind::String: {
        pad_to(4);
        const size_t at = out.size();
        const uint32_t len = static_cast<uint32_t>(n.data.size());
        append(&len, 4);
        append(n.data.data(), n.data.size());
        out.push_back(0);
        return at;
      }
      case FbNode::Kind::Scalars: {
        const size_t a = std::max<size_t>(n.align, 4);
        while ((out.size() + 4) % a || out.size() % 4) out.push_back(0);
        const size_t at = out.size();
        const uint32_t len = static_cast<uint32_t>(n.data.size() / n.elem_size);
        append(&len, 4);
        append(n.data.data(), n.data.size());
        return at;
      }
      case FbNode::Kind::Refs: {
        pad_to(4);
        const size_t at = out.size();
        const uint32_t len = static_cast<uint32_t>(n.items.size());
        append(&len, 4);
        out.resize(out.size() + 4 * n.items.size(), 0);
        for (size_t i = 0; i < n.items.size(); ++i) {
          const size_t slot = at + 4 + 4 * i;
          const size_t child = write(*n.items[i]);
          put_u32(slot, static_cast<uint32_t>(child - slot));
        }
        return at;
      }
      case FbNode::Kind::Table: break;
    }
    // Inline layout: the soffset, then fields by decreasing size (each aligned to its size within the table).
    std::vector<size_t> order(n.fields.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    auto fsize = [&](size_t i) { return n.fields[i].ref ? size_t{4} : n.fields[i].bytes.size(); };
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return fsize(a) > fsize(b); });
    std::vector<size_t> off(n.fields.size());
    size_t inline_size = 4, max_align = 4;
    for (size_t i : order) {
      const size_t s = fsize(i);
      while (inline_size % s) ++inline_size;
      off[i] = inline_size;
      inline_size += s;
      max_align = std::max(max_align, s);
    }
    int max_id = -1;
    for (const auto& f : n.fields) max_id = std::max(max_id, f.id);
    std::vector<uint16_t> vt(2 + static_cast<size_t>(max_id + 1), 0);
    vt[0] = static_cast<uint16_t>(2 * vt.size());
    vt[1] = static_cast<uint16_t>(inline_size);
    for (size_t i = 0; i < n.fields.size(); ++i) vt[2 + n.fields[i].id] = static_cast<uint16_t>(off[i]);
    pad_to(2);
    const size_t vt_at = out.size();
    append(vt.data(), 2 * vt.size());
    pad_to(max_align);
    const size_t t = out.size();
    out.resize(t + inline_size, 0);
    const int32_t soff = static_cast<int32_t>(t - vt_at);
    std::memcpy(out.data() + t, &soff, 4);
    for (size_t i = 0; i < n.fields.size(); ++i)
      if (!n.fields[i].ref) std::memcpy(out.data() + t + off[i], n.fields[i].bytes.data(), n.fields[i].bytes.size());
    for (size_t i = 0; i < n.fields.size(); ++i) {
      if (!n.fields[i].ref) continue;
      const size_t slot = t + off[i];
      const size_t child = write(*n.fields[i].ref);
      put_u32(slot, static_cast<uint32_t>(child - slot));
    }
    return t;
  }
};

}  // namespace

std::vector<uint8_t> fb_finish(const FbNodePtr& root, const std::string& identifier) {
  CATQ_CHECK(root && root->kind == FbNode::Kind::Table, Internal, "fb_finish: the root must be a table");
  CATQ_CHECK(identifier.empty() || identifier.size() == 4, Internal, "fb_finish: identifier '{}' is not 4 bytes",
             identifier);
  Layout l;
  l.out.resize(identifier.empty() ? 4 : 8, 0);
  if (!identifier.empty()) std::memcpy(l.out.data() + 4, identifier.data(), 4);
  const size_t r = l.write(*root);
  l.put_u32(0, static_cast<uint32_t>(r));
  l.pad_to(16);
  return std::move(l.out);
}

}  // namespace catq
