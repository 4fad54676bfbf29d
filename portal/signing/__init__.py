"""The public signing pages: link -> consent -> authenticate -> fill and sign -> done."""
