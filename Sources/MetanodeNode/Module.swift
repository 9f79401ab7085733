// MetanodeNode
