/* TEMPORARY: reference-count entry points of trees, Variables and boxes, replaced when those
 * components land (tree.c, variable.c, box.c). */
#include "linnx/value.h"
lx_tree *lx_tree_retain(lx_tree *t) { return t; }
void lx_tree_release(lx_tree *t) { (void)t; }
bool lx_tree_equal(const lx_tree *a, const lx_tree *b) { return a == b; }
lx_variable *lx_variable_retain(lx_variable *v) { return v; }
void lx_variable_release(lx_variable *v) { (void)v; }
lx_box *lx_box_retain(lx_box *b) { return b; }
void lx_box_release(lx_box *b) { (void)b; }
