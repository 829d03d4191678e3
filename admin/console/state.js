// What the console knows: who is signed in, and the tokens shown.

export const state = {
  /** The signed-in user ({id, email, role}), or null. */
  user: null,
  /** Whether the user is an admin of the account. */
  admin: false,
  /** The tokens listed, oldest first. */
  tokens: [],
  /** Credits per day by token id, as filled series. */
  usage: new Map(),
};

/**
 * Reports whether the signed-in user may change everything about a token:
 * its owner may, and admins may for tokens that belong to no one.
 */
export function manages(token) {
  if (token.user_id) {
    return state.user !== null && token.user_id === state.user.id;
  }
  return state.admin;
}
