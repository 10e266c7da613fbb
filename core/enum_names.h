// Enumerations that are spelled in configuration files and on command lines. Each such enum E
// declares, beside itself, `std::span<const char* const> enum_names(E)`: its spellings in
// enumerator order. The config room parses a spelling once into the enum; everything else
// compares enums, never strings.
#pragma once
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace hg {

template <class E>
const char* enum_name(E value) {
  return enum_names(value)[static_cast<size_t>(value)];
}

// false (out untouched) when `text` is none of E's spellings.
template <class E>
bool parse_enum(std::string_view text, E& out) {
  const auto names = enum_names(E{});
  for (size_t i = 0; i < names.size(); ++i)
    if (text == names[i]) {
      out = static_cast<E>(i);
      return true;
    }
  return false;
}

// "a, b, c", or "a|b|c" with separator "|".
template <class E>
std::string enum_choices(const char* separator = ", ") {
  const auto names = enum_names(E{});
  std::string text;
  for (size_t i = 0; i < names.size(); ++i) text += (i > 0 ? separator : "") + std::string(names[i]);
  return text;
}

}  // namespace hg
