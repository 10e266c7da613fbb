"""Which `hourglass` the scaling scripts run when --hourglass is not given.

$HOURGLASS when set (a path, or a name on PATH); else, in a source tree (ROOT holds
CMakeLists.txt), the build tree's build/hourglass; else, in an installed tree (ROOT is
<prefix>/share/hourglass after `cmake --install`), <prefix>/bin/hourglass. scripts/quickstart.sh
follows the same rule.
"""
import os
import shutil


def default_hourglass(root):
    named = os.environ.get("HOURGLASS")
    if named:
        return named if os.sep in named else (shutil.which(named) or named)
    if os.path.exists(os.path.join(root, "CMakeLists.txt")):
        return os.path.join(root, "build", "hourglass")
    return os.path.normpath(os.path.join(root, "..", "..", "bin", "hourglass"))
