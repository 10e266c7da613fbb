#include "trainer/ini.h"

#include <boost/program_options.hpp>

namespace hg {

namespace po = boost::program_options;

void store_ini(std::istream& in, const std::vector<std::string>& names, po::variables_map& values,
               const UnknownIniKey& unknown, const std::string& context, const std::string& fix) {
  po::options_description description;
  for (const std::string& name : names)
    description.add_options()(name.c_str(), po::value<std::string>());
  try {
    po::store(po::parse_config_file(in, description, false), values);
  } catch (const po::unknown_option& e) {
    throw unknown(e.get_option_name());
  } catch (const po::error& e) {
    throw UsageError(context + ": " + e.what() + fix);
  }
}

std::map<std::string, std::string> read_ini(std::istream& in, const std::vector<std::string>& names,
                                            const UnknownIniKey& unknown,
                                            const std::string& context, const std::string& fix) {
  po::variables_map values;
  store_ini(in, names, values, unknown, context, fix);
  std::map<std::string, std::string> read;
  for (const auto& [name, value] : values) read[name] = value.as<std::string>();
  return read;
}

}  // namespace hg
