// The project's one INI reader: run configurations and the configurations stored in checkpoints
// (trainer/config.cpp), and the planner's cluster files (plan/cluster.cpp), all read by
// boost::program_options' config-file parser: `[section]` lines, `key = value` lines whose name
// is "section.key", '#' starting a comment, blanks around keys and values dropped.
#pragma once
#include <functional>
#include <istream>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"

namespace boost::program_options {
class variables_map;
}

namespace hg {

// Makes a reader's UsageError for a name ("section.key") it does not know: it names the valid
// keys of the section.
using UnknownIniKey = std::function<UsageError(const std::string& name)>;

// Stores every value of `in` into `values` under its name, as a std::string. Names already in
// `values` keep their value (boost's store never overwrites), so flags stored first override the
// file. A name not in `names` throws unknown(name); any other fault (a line that is not
// `key = value`, a name given twice) throws UsageError(`context` + ": " + the parser's reason +
// `fix`).
void store_ini(std::istream& in, const std::vector<std::string>& names,
               boost::program_options::variables_map& values, const UnknownIniKey& unknown,
               const std::string& context, const std::string& fix = "");

// The same for a reader with no other source of values: name -> value.
std::map<std::string, std::string> read_ini(std::istream& in, const std::vector<std::string>& names,
                                            const UnknownIniKey& unknown,
                                            const std::string& context,
                                            const std::string& fix = "");

}  // namespace hg
