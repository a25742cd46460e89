/* agent config: being written */
