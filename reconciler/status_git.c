#include "status_git.h"
