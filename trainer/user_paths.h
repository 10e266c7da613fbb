// Questions about paths the user gave (config keys, command-line arguments) that never throw.
// std::filesystem's throwing forms raise filesystem_error for a path the OS cannot even look at
// (a name longer than NAME_MAX, no permission on a parent, a loop of links): that would end the
// run with an unexpected exception instead of the UsageError (exit 2) bad input gets. Here such a
// path is simply not an existing file or directory, and the caller's message names it.
#pragma once
#include <filesystem>
#include <string>
#include <system_error>

namespace hg {

inline bool user_path_exists(const std::string& path) {
  std::error_code error;
  return std::filesystem::exists(path, error);
}

inline bool user_path_is_file(const std::string& path) {
  std::error_code error;
  return std::filesystem::is_regular_file(path, error);
}

inline bool user_path_is_directory(const std::string& path) {
  std::error_code error;
  return std::filesystem::is_directory(path, error);
}

}  // namespace hg
