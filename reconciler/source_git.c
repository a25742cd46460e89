#include "source_git.h"
