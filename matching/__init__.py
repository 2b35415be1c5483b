"""The master patient index: records, persons, links, and the matching that joins them."""
