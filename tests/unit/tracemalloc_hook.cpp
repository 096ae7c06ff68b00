// The replacement global operator new/delete for the whole memlens_tests executable: every test
// file links into one program, and track_new.hpp belongs in exactly one .cpp of a program.
#include <memlens/track_new.hpp>
