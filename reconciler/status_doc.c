/* status documents: being written */
