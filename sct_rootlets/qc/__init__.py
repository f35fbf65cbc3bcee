"""Quality-control reports that SCT's viewer opens: entries, pictures, and a viewer of our own."""
