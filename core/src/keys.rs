//! Key → partition resolution (filled in by the resolver work).
